// Glyphs with ASCII fallbacks for non-UTF-8 locales (btop-style: block eighths for bars, '#' without).
import type {TerminalEnv} from './types.js';

const eighths = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

export type Glyphs = {
	ellipsis: string;
	mark: string;
	cursor: string;
	up: string;
	down: string;
	separator: string;
	check: string;
	cross: string;
	warn: string;
	dot: string;
	/** ‖ΔW‖, the Frobenius norm of the update. */
	norm: string;
	borderStyle: 'round' | 'classic';
	rule: string;
	/** asciichart symbols in its order: ┼ ┤ ╶ ╴ ─ ╰ ╭ ╮ ╯ │ */
	chart: [string, string, string, string, string, string, string, string, string, string];
};

const unicodeGlyphs: Glyphs = {
	ellipsis: '…',
	mark: '●',
	cursor: '▶',
	up: '↑',
	down: '↓',
	separator: '│',
	check: '✓',
	cross: '✗',
	warn: '!',
	dot: '·',
	norm: '‖ΔW‖',
	borderStyle: 'round',
	rule: '─',
	chart: ['┼', '┤', '╶', '╴', '─', '╰', '╭', '╮', '╯', '│'],
};

const asciiGlyphs: Glyphs = {
	ellipsis: '...',
	mark: '*',
	cursor: '>',
	up: '^',
	down: 'v',
	separator: '|',
	check: '+',
	cross: 'x',
	warn: '!',
	dot: '.',
	norm: '|dW|',
	borderStyle: 'classic',
	rule: '-',
	chart: ['+', '|', '-', '-', '-', '\\', '/', '\\', '/', '|'],
};

export function glyphs(env: TerminalEnv): Glyphs {
	return env.unicode ? unicodeGlyphs : asciiGlyphs;
}

/** A horizontal bar `fraction` (0..1) of `width` columns, with eighth-cell resolution in Unicode. */
export function bar(fraction: number, width: number, env: TerminalEnv): string {
	const f = Number.isFinite(fraction) ? Math.min(Math.max(fraction, 0), 1) : 0;
	if (width <= 0) {
		return '';
	}

	if (!env.unicode) {
		return '#'.repeat(Math.round(f * width));
	}

	const cells = f * width;
	const full = Math.floor(cells);
	const part = Math.floor((cells - full) * 8);
	return '█'.repeat(full) + (full < width ? eighths[part] ?? '' : '');
}

/** `[████░░░░]` style progress of done/total in exactly `width` columns. */
export function progressBar(done: number, total: number, width: number, env: TerminalEnv): string {
	const inner = Math.max(1, width - 2);
	const fraction = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
	const filled = Math.round(fraction * inner);
	const [on, off] = env.unicode ? ['█', '░'] : ['#', '.'];
	return `[${on.repeat(filled)}${off.repeat(inner - filled)}]`;
}
