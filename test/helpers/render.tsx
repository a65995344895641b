// Renders an Ink tree into a fake terminal of a given size (ink-testing-library fixes 100 columns and
// has no rows), sends keys, and waits for frame content instead of sleeping.
import {EventEmitter} from 'node:events';
import {render, type Instance} from 'ink';
import type {ReactNode} from 'react';

export class FakeStdout extends EventEmitter {
	columns: number;
	rows: number;
	readonly isTTY = true;
	readonly frames: string[] = [];
	/** Everything written outside Ink's frames (e.g. the OSC 52 copy). */
	readonly raw: string[] = [];

	constructor(columns: number, rows: number) {
		super();
		this.columns = columns;
		this.rows = rows;
	}

	write = (chunk: string): boolean => {
		this.frames.push(chunk);
		return true;
	};

	lastFrame(): string {
		return this.frames.at(-1) ?? '';
	}

	resize(columns: number, rows: number): void {
		this.columns = columns;
		this.rows = rows;
		this.emit('resize');
	}

	// Ink's cursor helpers and log-update call these on a TTY.
	cursorTo(): boolean {
		return true;
	}

	moveCursor(): boolean {
		return true;
	}

	clearLine(): boolean {
		return true;
	}
}

export class FakeStdin extends EventEmitter {
	readonly isTTY = true;
	private data: string | null = null;

	write(data: string): void {
		this.data = data;
		this.emit('readable');
		this.emit('data', data);
	}

	read = (): string | null => {
		const {data} = this;
		this.data = null;
		return data;
	};

	setEncoding(): void {}
	setRawMode(): void {}
	resume(): void {}
	pause(): void {}
	ref(): void {}
	unref(): void {}
}

export const keys = {
	enter: '\r',
	escape: '\u001B',
	tab: '\t',
	shiftTab: '\u001B[Z',
	up: '\u001B[A',
	down: '\u001B[B',
	right: '\u001B[C',
	left: '\u001B[D',
	pageDown: '\u001B[6~',
	pageUp: '\u001B[5~',
	space: ' ',
	backspace: '\u007F',
	ctrlC: '\u0003',
	ctrlU: '\u0015',
} as const;

export type Rendered = {
	stdout: FakeStdout;
	stdin: FakeStdin;
	instance: Instance;
	lastFrame: () => string;
	/** Sends keys one at a time (each is a separate read, as a typist would produce). */
	press: (...sequence: string[]) => void;
	/** Resolves with the frame once `check` passes on it; rejects after `timeoutMs` with the last frame. */
	waitFor: (check: string | RegExp | ((frame: string) => boolean), timeoutMs?: number) => Promise<string>;
	/** Presses keys, then waits for content. */
	pressAndWait: (check: string | RegExp | ((frame: string) => boolean), ...sequence: string[]) => Promise<string>;
	unmount: () => void;
};

function matches(frame: string, check: string | RegExp | ((frame: string) => boolean)): boolean {
	if (typeof check === 'string') {
		return frame.includes(check);
	}

	return check instanceof RegExp ? check.test(frame) : check(frame);
}

export function renderInTerminal(node: ReactNode, {columns, rows}: {columns: number; rows: number}): Rendered {
	const stdout = new FakeStdout(columns, rows);
	const stdin = new FakeStdin();
	const instance = render(node, {
		stdout: stdout as unknown as NodeJS.WriteStream,
		stdin: stdin as unknown as NodeJS.ReadStream,
		stderr: stdout as unknown as NodeJS.WriteStream,
		debug: true,
		exitOnCtrlC: false,
		patchConsole: false,
	});
	const waitFor = async (check: string | RegExp | ((frame: string) => boolean), timeoutMs = 10_000): Promise<string> => {
		const deadline = Date.now() + timeoutMs;
		for (;;) {
			const frame = stdout.lastFrame();
			if (matches(frame, check)) {
				return frame;
			}

			if (Date.now() > deadline) {
				throw new Error(`timed out waiting for ${String(check)}; last frame:\n${frame}`);
			}

			// Polling interval, not a fixed wait for an outcome.
			await new Promise(resolve => {
				setTimeout(resolve, 10);
			});
		}
	};

	const press = (...sequence: string[]): void => {
		for (const key of sequence) {
			stdin.write(key);
		}
	};

	return {
		stdout,
		stdin,
		instance,
		lastFrame: () => stdout.lastFrame(),
		press,
		waitFor,
		async pressAndWait(check, ...sequence) {
			press(...sequence);
			return waitFor(check);
		},
		unmount() {
			instance.unmount();
			instance.cleanup();
		},
	};
}

/** The frame without ANSI styling, for text assertions. */
export function plain(frame: string): string {
	return frame.replaceAll(/\u001B\[[0-9;]*m/g, '');
}
