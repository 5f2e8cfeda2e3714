// Example API Worker: reads and writes the stage's `notes` table through its Hyperdrive binding.
// GET /notes lists rows; POST /notes with a text body adds one. Each stage has its own branch,
// so a write in pr-147 is invisible in staging.
//
// This is the source: forkstage bundles it with postgres.js (esbuild, before each synth when it
// changed) into worker/dist/index.js, the single module that is deployed (and served by Miniflare).
import postgres from "postgres";

// The binding's discrete fields rather than its connectionString: the local runtime (workerd)
// builds that string without percent-encoding, so a password with "@", ":" or "/" would break it.
function connect(hyperdrive) {
  return postgres({
    host: hyperdrive.host,
    port: hyperdrive.port,
    database: hyperdrive.database,
    username: hyperdrive.user,
    password: hyperdrive.password,
    max: 1,
    fetch_types: false,
  });
}

export default {
  async fetch(request, env) {
    const sql = connect(env.HYPERDRIVE);
    try {
      const url = new URL(request.url);
      if (url.pathname === "/notes" && request.method === "POST") {
        const body = (await request.text()).slice(0, 1000);
        const [row] = await sql`insert into notes (body) values (${body}) returning id, body`;
        return Response.json(row, { status: 201 });
      }
      if (url.pathname === "/notes") {
        const rows = await sql`select id, body from notes order by id`;
        return Response.json(rows);
      }
      if (url.pathname === "/health") {
        const [row] = await sql`select current_database() as database`;
        return Response.json({ ok: true, ...row });
      }
      return new Response("not found", { status: 404 });
    } catch (err) {
      return Response.json({ error: String(err.message || err) }, { status: 500 });
    } finally {
      await sql.end({ timeout: 1 });
    }
  },
};
