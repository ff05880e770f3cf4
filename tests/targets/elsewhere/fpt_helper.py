"""Same base name as tests/targets/fpt_helper.py but never imported: `module` on this file must
fail and may suggest the loaded module with the same base name."""
VALUE = 2
