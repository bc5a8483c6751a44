-- Runs record who runs them and until when, so that a run left 'running' by a killed process
-- is marked failed by the next process that looks (see mt_core/storage/stale.py).
-- Package tool availability is no longer stored: it is what each process has installed, so that
-- two machines with different plugins sharing one database do not flip it back and forth.

ALTER TABLE runs ADD COLUMN owner_host TEXT;        -- socket.gethostname() of the process running it
ALTER TABLE runs ADD COLUMN owner_boot_id TEXT;     -- that host's boot id
ALTER TABLE runs ADD COLUMN owner_pid INTEGER;
ALTER TABLE runs ADD COLUMN owner_start_time TEXT;  -- the kernel's start time of that pid
ALTER TABLE runs ADD COLUMN deadline TEXT;          -- nobody may still be running it after this

ALTER TABLE package_tools DROP COLUMN available;
