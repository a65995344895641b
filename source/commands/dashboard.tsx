// `lorascope [folder] [--device auto|cpu|cuda] [--out dir] [--base checkpoint]`: the full-screen dashboard. Owns the terminal for
// the app's lifetime: enters the alternate screen around Ink's render and leaves it on every exit path
// (q, Ctrl+C, SIGTERM/SIGHUP, a render error, an uncaught exception), and keeps stray console output
// off the screen (it goes to a log file in the cache folder).
import {appendFileSync, mkdirSync, statSync, writeSync} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import meow from 'meow';
import type {DevicePreference} from '../engine/protocol.js';
import {fileSystemSource, withPrefetchedListing} from '../hooks/folder-source.js';
import {errorReason, readHeader} from '../lora/safetensors.js';
import {sanitizeLine} from '../lora/sanitize.js';
import {ensureSamples} from '../lora/samples.js';
import {detectTerminalEnv} from '../state/env.js';

const help = `
  Usage
    $ lorascope [folder] [--device auto|cpu|cuda] [--out <dir>] [--base <checkpoint.safetensors>]

  Opens a full-screen dashboard of the LoRA files (.safetensors) under the folder.
  Without a folder, opens a set of generated sample LoRAs.

  Options
    --device      where the engine computes statistics: auto (default), cpu or cuda
    --no-watch    do not watch the folder for new files
    --out <dir>   where the Resize view (r) writes resized files (default: next to the source)
    --base <checkpoint.safetensors>
                  the base model the LoRAs were trained on: enables the Resize view's
                  checkpoint recipes spn_ckpt and fro_ckpt (elias-gaeros), which score each
                  singular value against the norms of the base weight it modifies

  Other commands: lorascope inspect | resize | meta | compare (see lorascope <command> --help)
`;

const enterAltScreen = '\u001B[?1049h';
const leaveAltScreen = '\u001B[?1049l';
const showCursor = '\u001B[?25h';

export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
	const base = env['XDG_CACHE_HOME'] && path.isAbsolute(env['XDG_CACHE_HOME']) ? env['XDG_CACHE_HOME'] : path.join(os.homedir(), '.cache');
	return path.join(base, 'lorascope');
}

function isDevice(value: string): value is DevicePreference {
	return value === 'auto' || value === 'cpu' || value === 'cuda';
}

/** Console calls from any library while the app runs go to this file instead of the screen. */
function redirectConsole(logFile: string): () => void {
	const methods = ['log', 'info', 'warn', 'error', 'debug'] as const;
	const saved = methods.map(name => console[name]);
	for (const name of methods) {
		console[name] = (...args: unknown[]) => {
			try {
				appendFileSync(logFile, `${new Date().toISOString()} ${name} ${args.map(String).join(' ')}\n`);
			} catch {
				// Nowhere left to report it; dropping it keeps the screen intact.
			}
		};
	}

	return () => {
		for (const [index, name] of methods.entries()) {
			console[name] = saved[index]!;
		}
	};
}

export async function run(argv: string[]): Promise<number> {
	const cli = meow(help, {
		argv,
		importMeta: import.meta,
		flags: {
			device: {type: 'string', default: 'auto'},
			watch: {type: 'boolean', default: true},
			out: {type: 'string'},
			base: {type: 'string'},
		},
	});
	const device = cli.flags.device;
	if (!isDevice(device)) {
		process.stderr.write(`lorascope: --device must be auto, cpu or cuda (got "${device}")\n`);
		return 2;
	}

	if (cli.input.length > 1) {
		process.stderr.write('lorascope: give one folder (or none for the samples)\n');
		return 2;
	}

	const cache = cacheDir();
	let folder: string;
	if (cli.input[0] === undefined) {
		folder = await ensureSamples(cache);
	} else {
		folder = path.resolve(cli.input[0]);
		let isDirectory = false;
		try {
			isDirectory = statSync(folder).isDirectory();
		} catch {
			// Reported below.
		}

		if (!isDirectory) {
			process.stderr.write(`lorascope: ${cli.input[0]} is not a folder (to look at one file: lorascope inspect <file>)\n`);
			return 2;
		}
	}

	let base: string | undefined;
	if (cli.flags.base !== undefined) {
		// Checked before the screen is taken: a typo should not cost a full start-up.
		base = path.resolve(cli.flags.base);
		let isFile = false;
		try {
			isFile = statSync(base).isFile();
		} catch {
			// Reported below.
		}

		if (!isFile) {
			process.stderr.write(`lorascope: --base ${sanitizeLine(cli.flags.base, 300)}: no such file (give the base checkpoint, a .safetensors file)\n`);
			return 2;
		}

		try {
			await readHeader(base);
		} catch (error) {
			process.stderr.write(`lorascope: --base ${sanitizeLine(cli.flags.base, 300)}: ${sanitizeLine(errorReason(error), 300)}\n`);
			return 2;
		}
	}

	if (!process.stdout.isTTY || !process.stdin.isTTY) {
		process.stderr.write('lorascope: the dashboard needs a terminal (for scripts use: lorascope inspect <file> --json)\n');
		return 2;
	}

	// The folder's listing runs on the thread pool while the modules below load.
	const source = withPrefetchedListing(fileSystemSource, folder);
	// React (loaded with Ink below) picks its build when it loads: the production one is several times
	// faster at re-rendering a thousand-row list.
	process.env['NODE_ENV'] ??= 'production';
	// No JSX in this file for the same reason: a static react/jsx-runtime import would load React in
	// development mode before NODE_ENV is set, and mixing the two builds renders nothing.
	const [react, {render}, {Root}, {engineFactory}] = await Promise.all([import('react'), import('ink'), import('../app.js'), import('../hooks/stats-engine.js')]);
	// React is CommonJS: Node's import() also names its exports, the CLI bundle's only has `default`.
	const {createElement} = react.default;
	mkdirSync(cache, {recursive: true});
	const restoreConsole = redirectConsole(path.join(cache, 'dashboard.log'));
	const env = detectTerminalEnv(process.env, true);

	let onScreen = false;
	const restoreTerminal = (): void => {
		if (onScreen) {
			onScreen = false;
			// Synchronous, so it also works from 'exit' handlers.
			try {
				writeSync(1, leaveAltScreen + showCursor);
			} catch {
				// The terminal is gone.
			}
		}
	};

	writeSync(1, enterAltScreen);
	onScreen = true;
	const props = {
		folder,
		source,
		env,
		engine: engineFactory(device),
		watch: cli.flags.watch,
		resizeOutDir: cli.flags.out === undefined ? undefined : path.resolve(cli.flags.out),
		resizeBase: base,
	};
	const instance = render(createElement(Root, props), {
		exitOnCtrlC: false,
		patchConsole: false,
		maxFps: 30,
	});

	let exitCode = 0;
	let fatal: unknown;
	const onSignal = (signal: NodeJS.Signals): void => {
		exitCode = 128 + (os.constants.signals[signal] ?? 15);
		instance.unmount();
	};

	const onFatal = (error: unknown): void => {
		fatal ??= error;
		exitCode = 1;
		instance.unmount();
	};

	process.on('SIGTERM', onSignal);
	process.on('SIGHUP', onSignal);
	process.on('SIGINT', onSignal);
	process.on('uncaughtException', onFatal);
	process.on('unhandledRejection', onFatal);
	process.on('exit', restoreTerminal);
	try {
		await instance.waitUntilExit();
	} catch (error) {
		fatal ??= error;
		exitCode = 1;
	} finally {
		instance.cleanup();
		restoreTerminal();
		restoreConsole();
		process.off('SIGTERM', onSignal);
		process.off('SIGHUP', onSignal);
		process.off('SIGINT', onSignal);
		process.off('uncaughtException', onFatal);
		process.off('unhandledRejection', onFatal);
		process.off('exit', restoreTerminal);
	}

	if (fatal !== undefined) {
		process.stderr.write(`lorascope: ${fatal instanceof Error ? (fatal.stack ?? fatal.message) : String(fatal)}\n`);
	}

	return exitCode;
}
