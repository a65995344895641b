#!/usr/bin/env node
import process from 'node:process';

// Subcommands load lazily so `lorascope inspect` never pays for React/Ink, and the dashboard
// never pays for command code it does not use.
const commands: Record<string, () => Promise<{run: (argv: string[]) => Promise<number>}>> = {
	inspect: async () => import('./commands/inspect.js'),
	resize: async () => import('./commands/resize.js'),
	meta: async () => import('./commands/meta.js'),
	compare: async () => import('./commands/compare.js'),
};

/**
 * Ink (through is-in-ci, read once when Ink loads) renders only the final frame when CI or
 * CONTINUOUS_INTEGRATION is set, which leaves an interactive dashboard blank until it exits. Build
 * boxes and dev containers often export CI=true, yet a person at a real terminal wants live frames,
 * so those variables are dropped before Ink loads whenever both ends are a terminal.
 */
function allowLiveRendering(): void {
	if (process.stdout.isTTY && process.stdin.isTTY) {
		delete process.env['CI'];
		delete process.env['CONTINUOUS_INTEGRATION'];
	}
}

async function main(): Promise<number> {
	const argv = process.argv.slice(2);
	const [first, ...rest] = argv;
	const loader = first === undefined ? undefined : commands[first];
	if (loader) {
		const command = await loader();
		return command.run(rest);
	}

	allowLiveRendering();
	const dashboard = await import('./commands/dashboard.js');
	return dashboard.run(argv);
}

main().then(
	code => {
		process.exitCode = code;
	},
	(error: unknown) => {
		process.stderr.write(`lorascope: ${error instanceof Error ? error.message : String(error)}\n`);
		process.exitCode = 1;
	},
);
