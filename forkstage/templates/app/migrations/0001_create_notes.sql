-- Each stage's branch runs the migrations it has not run yet, in file-name order; a preview
-- forked from staging inherits staging's rows and migration history.
CREATE TABLE notes (
    id serial PRIMARY KEY,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO notes (body) VALUES ('Hello from {{name}}: this note lives in the branch database.');
