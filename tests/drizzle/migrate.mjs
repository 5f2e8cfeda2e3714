// drizzle-orm's own migrator (postgres-js driver), for tests/test_migrations.py: the other side of
// "forkstage and Drizzle agree on what ran". One node start for several runs, in order:
//
//   node migrate.mjs MAJOR URL FOLDER [URL FOLDER ...]
//
// MAJOR 0 is drizzle-orm 0.x (this folder's package, the meta/_journal.json layout); 1 is
// drizzle-orm 1.0 (./v1, the YYYYMMDDHHMMSS_name/migration.sql folders). A failing run prints
// drizzle's error on stderr and exits 1; the runs after it do not happen.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const [major, ...pairs] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));
const packageDir = { 0: here, 1: join(here, "v1") }[major];
if (!packageDir || pairs.length === 0 || pairs.length % 2 !== 0) {
  console.error("usage: node migrate.mjs 0|1 URL FOLDER [URL FOLDER ...]");
  process.exit(2);
}
if (!existsSync(join(packageDir, "node_modules", "drizzle-orm"))) {
  console.error(`drizzle-orm is not installed in ${packageDir}: run make install`);
  process.exit(3);
}
// Each major resolves its own drizzle-orm and postgres (two node_modules, see package.json).
const require = createRequire(join(packageDir, "package.json"));
const postgres = require("postgres");
const { drizzle } = require("drizzle-orm/postgres-js");
const { migrate } = require("drizzle-orm/postgres-js/migrator");

for (let i = 0; i < pairs.length; i += 2) {
  const client = postgres(pairs[i], { max: 1, onnotice: () => {} });
  try {
    await migrate(drizzle({ client }), { migrationsFolder: pairs[i + 1] });
  } catch (error) {
    console.error(`drizzle-orm migrate ${pairs[i + 1]}: ${error.cause ?? error.message}`);
    process.exitCode = 1;
    break;
  } finally {
    await client.end();
  }
}
