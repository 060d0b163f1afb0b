"""Apply: what commands do to targets. Release, rollback and heal run as named steps with undo
(steps, release); a fleet rolls them over its targets (fleet); builds, the health gate, the
router's runtime API, the watch after the switch, archives and volume backups, and the
readers behind status, drift and verify."""
