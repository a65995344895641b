// A real pseudo-terminal (node-pty) feeding a headless xterm.js: end-to-end tests run the built CLI in
// it and read the screen as a user would see it, without tmux. Both packages are CommonJS; they load
// through createRequire so a platform without a pty binary is reported, not a crash at import time.
import assert from 'node:assert/strict';
import {spawnSync} from 'node:child_process';
import {readdir, stat} from 'node:fs/promises';
import {createRequire} from 'node:module';
import path from 'node:path';
import {setTimeout as delay} from 'node:timers/promises';
import type {IPty} from '@lydell/node-pty';
import type {Terminal} from '@xterm/headless';

type PtyModule = typeof import('@lydell/node-pty');
type XtermModule = typeof import('@xterm/headless');

const require = createRequire(import.meta.url);

export type PtyLibraries = {pty: PtyModule; xterm: XtermModule};

/** The pty and terminal emulator modules, or why they cannot load here (the caller skips). */
export function loadPtyLibraries(): PtyLibraries | {error: string} {
	try {
		const pty = require('@lydell/node-pty') as PtyModule;
		const xterm = require('@xterm/headless') as XtermModule;
		return {pty, xterm};
	} catch (error) {
		return {error: (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? 'unknown error'};
	}
}

/** Newest mtime of the files under a folder (recursive). */
async function newest(dir: string): Promise<number> {
	let latest = 0;
	for (const entry of await readdir(dir, {withFileTypes: true, recursive: true})) {
		if (entry.isFile()) {
			latest = Math.max(latest, (await stat(path.join(entry.parentPath, entry.name))).mtimeMs);
		}
	}

	return latest;
}

/** The CLI users run: the bundle that `npm run build` makes (scripts/bundle.mjs). */
export function builtCli(root: string): string {
	return path.join(root, 'build', 'bundle', 'cli.js');
}

/** `npm run build` when the built CLI is missing or older than the sources (npm test builds first anyway). */
export async function ensureBuilt(root: string): Promise<string> {
	const cli = builtCli(root);
	const built = await stat(cli).then(info => info.mtimeMs, () => 0);
	if (built <= (await newest(path.join(root, 'source')))) {
		const result = spawnSync('npm', ['run', 'build'], {cwd: root, encoding: 'utf8'});
		assert.equal(result.status, 0, `npm run build failed:\n${result.stdout}\n${result.stderr}`);
	}

	return cli;
}

export type PtyExit = {exitCode: number; signal?: number};

export type PtyScreenOptions = {cols: number; rows: number; cwd: string; env: Record<string, string | undefined>};

/** A command in a pty, its output parsed by a headless xterm of the same size. */
export class PtyScreen {
	readonly term: Terminal;
	readonly child: IPty;
	/** Every title the program set (OSC 0/2), in order. */
	readonly titles: string[] = [];
	/** Everything the program wrote, unparsed. */
	raw = '';
	/** Set once the program has exited. */
	exited: PtyExit | undefined;
	readonly exit: Promise<PtyExit>;

	constructor(libraries: PtyLibraries, file: string, args: string[], options: PtyScreenOptions) {
		this.term = new libraries.xterm.Terminal({cols: options.cols, rows: options.rows, allowProposedApi: true});
		this.term.onTitleChange(title => this.titles.push(title));
		this.child = libraries.pty.spawn(file, args, {name: 'xterm-256color', ...options});
		this.child.onData(data => {
			this.raw += data;
			this.term.write(data);
		});
		// Replies to device queries (cursor position, device attributes) go back as a terminal would send them.
		this.term.onData(reply => {
			if (this.exited === undefined) {
				this.child.write(reply);
			}
		});
		this.exit = new Promise(resolve => {
			this.child.onExit(event => {
				this.exited = event;
				resolve(event);
			});
		});
	}

	/** Resolves once xterm has parsed everything received so far (its write is asynchronous). */
	async flush(): Promise<void> {
		await new Promise<void>(resolve => {
			this.term.write('', resolve);
		});
	}

	/** The visible screen, one line per row, trailing spaces trimmed. */
	async text(): Promise<string> {
		await this.flush();
		return this.lines().join('\n');
	}

	lines(): string[] {
		const buffer = this.term.buffer.active;
		const lines: string[] = [];
		for (let row = 0; row < this.term.rows; row++) {
			lines.push(buffer.getLine(buffer.viewportY + row)?.translateToString(true) ?? '');
		}

		return lines;
	}

	/** The text drawn in inverse video (the selection bars), one entry per run of inverse cells. */
	async inverseText(): Promise<string[]> {
		await this.flush();
		const buffer = this.term.buffer.active;
		const runs: string[] = [];
		for (let row = 0; row < this.term.rows; row++) {
			const line = buffer.getLine(buffer.viewportY + row);
			let run = '';
			for (let x = 0; x <= this.term.cols; x++) {
				const cell = x < this.term.cols ? line?.getCell(x) : undefined;
				if (cell?.isInverse()) {
					// The second cell of a wide character has width 0 and no text of its own.
					run += cell.getWidth() === 0 ? '' : cell.getChars() || ' ';
				} else if (run !== '') {
					runs.push(run.trim());
					run = '';
				}
			}
		}

		return runs;
	}

	bufferType(): 'normal' | 'alternate' {
		return this.term.buffer.active.type;
	}

	/** Polls the screen until `check` holds; the error carries the last screen. */
	async waitFor(check: (text: string) => boolean, what: string, timeoutMs = 30_000): Promise<string> {
		const deadline = Date.now() + timeoutMs;
		for (;;) {
			const text = await this.text();
			if (check(text)) {
				return text;
			}

			if (Date.now() > deadline || this.exited !== undefined) {
				const reason = this.exited === undefined ? 'timed out' : `the program exited (${JSON.stringify(this.exited)})`;
				throw new Error(`${reason} waiting for ${what}; screen (${this.term.cols}x${this.term.rows}, ${this.bufferType()} buffer):\n${text}`);
			}

			// Polling interval, not a wait for an outcome.
			await delay(50);
		}
	}

	/** Typed keys, as a terminal sends them ('\r' Enter, '\t' Tab, '\u001B' Escape). */
	keys(text: string): void {
		this.child.write(text);
	}

	/** Both the pty (SIGWINCH to the program) and the emulator change size. */
	resize(cols: number, rows: number): void {
		this.child.resize(cols, rows);
		this.term.resize(cols, rows);
	}

	/** Ends the program if it is still running: SIGTERM, then SIGKILL if it does not go. */
	async kill(graceMs = 3000): Promise<void> {
		if (this.exited === undefined) {
			this.child.kill('SIGTERM');
			const gone = await Promise.race([this.exit.then(() => true), delay(graceMs, false, {ref: false})]);
			if (!gone && this.exited === undefined) {
				this.child.kill('SIGKILL');
				await Promise.race([this.exit, delay(graceMs, undefined, {ref: false})]);
			}
		}

		this.term.dispose();
	}
}
