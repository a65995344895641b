// Imported first by tests that need real styling in frames: chalk decides its colour level when it
// loads, from the environment, and the test runner's stdout is a pipe.
process.env['FORCE_COLOR'] = '1';
