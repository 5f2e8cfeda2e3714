-- One row so a fresh preview shows something.
INSERT INTO notes (body) VALUES ('Hello from forkstage: this note lives in the branch database.');
