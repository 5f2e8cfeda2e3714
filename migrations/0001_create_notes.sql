-- The table the example Worker reads through Hyperdrive.
CREATE TABLE notes (
    id serial PRIMARY KEY,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
