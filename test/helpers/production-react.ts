// Imported first by timing tests: React picks its development or production build when it loads,
// and the CLI runs the production build (source/commands/dashboard.tsx sets NODE_ENV before loading it).
process.env['NODE_ENV'] ??= 'production';
