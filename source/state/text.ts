// Width-exact text helpers for building screen lines. Everything that came from a file goes through
// `clean` (H2's sanitiser) first; `fit` then pads or cuts already-clean text to an exact column count.
import {displayWidth, sanitizeLine} from '../lora/sanitize.js';
import type {TerminalEnv} from './types.js';

/** Untrusted text → one inert line, ASCII-only in a non-UTF-8 locale. */
export function clean(raw: unknown, env: TerminalEnv, maxLength?: number): string {
	return sanitizeLine(typeof raw === 'string' ? raw : String(raw), maxLength, !env.unicode);
}

const asciiReplacements: Readonly<Record<string, string>> = {
	'…': '...',
	'·': '-',
	'×': 'x',
	'–': '-',
	'—': '-',
	'→': '->',
	'←': '<-',
	'↑': '^',
	'↓': 'v',
	'‖': '|',
	'Δ': 'd',
	'≥': '>=',
	'★': '*',
	'●': '*',
	'✓': '+',
	'✗': 'x',
	'↵': 'enter',
	'⌫': 'bksp',
	'▏': '|',
	'’': "'",
};

/**
 * Our own text in a non-UTF-8 locale: known glyphs become ASCII look-alikes, anything else '?'.
 * (Text from files is already ASCII there: `clean` passes ascii to the sanitiser.)
 */
export function toAscii(text: string): string {
	if (/^[\u0000-\u007F]*$/.test(text)) {
		return text;
	}

	let out = '';
	for (const ch of text) {
		out += ch <= '\u007F' ? ch : asciiReplacements[ch] ?? '?';
	}

	return out;
}

export function ellipsis(env: TerminalEnv): string {
	return env.unicode ? '…' : '...';
}

/** The longest prefix of clean text that fits in `width` columns (no ellipsis). */
export function cutToWidth(text: string, width: number): string {
	let out = '';
	let used = 0;
	for (const ch of text) {
		const w = displayWidth(ch);
		if (used + w > width) {
			break;
		}

		out += ch;
		used += w;
	}

	return out;
}

/** Cuts clean text to at most `width` columns, ending with an ellipsis when it was cut. */
export function truncate(text: string, width: number, env: TerminalEnv): string {
	if (width <= 0) {
		return '';
	}

	if (displayWidth(text) <= width) {
		return text;
	}

	const mark = ellipsis(env);
	if (width <= mark.length) {
		return mark.slice(0, width);
	}

	let out = '';
	let used = 0;
	for (const ch of text) {
		const w = displayWidth(ch);
		if (used + w > width - mark.length) {
			break;
		}

		out += ch;
		used += w;
	}

	return out + mark;
}

/** Clean text padded (or cut) to exactly `width` columns. */
export function fit(text: string, width: number, env: TerminalEnv, align: 'left' | 'right' = 'left'): string {
	const cut = truncate(text, width, env);
	const pad = Math.max(0, width - displayWidth(cut));
	return align === 'left' ? cut + ' '.repeat(pad) : ' '.repeat(pad) + cut;
}

export {displayWidth};

/** Cuts clean text into pieces of at most `width` columns (no word boundaries). */
function hardBreak(text: string, width: number): string[] {
	const out: string[] = [];
	let current = '';
	let used = 0;
	for (const ch of text) {
		const cw = displayWidth(ch);
		if (used + cw > width && current !== '') {
			out.push(current);
			current = '';
			used = 0;
		}

		current += ch;
		used += cw;
	}

	out.push(current);
	return out;
}

/**
 * Splits clean text (may contain newlines) into lines of at most `width` columns, breaking at spaces
 * where it can and inside a word only when the word alone is too long.
 */
export function wrap(text: string, width: number, maxLines = Number.POSITIVE_INFINITY): string[] {
	const out: string[] = [];
	const w = Math.max(1, width);
	for (const paragraph of text.replaceAll('\t', ' ').split('\n')) {
		let current = '';
		let used = 0;
		for (const word of paragraph.split(/( +)/)) {
			if (word === '') {
				continue;
			}

			const ww = displayWidth(word);
			if (used + ww <= w) {
				current += word;
				used += ww;
				continue;
			}

			if (/^ +$/.test(word)) {
				// Spaces at a break are dropped.
				out.push(current);
				current = '';
				used = 0;
				continue;
			}

			if (current.trim() !== '') {
				out.push(current.trimEnd());
			}

			const pieces = ww > w ? hardBreak(word, w) : [word];
			out.push(...pieces.slice(0, -1));
			current = pieces.at(-1) ?? '';
			used = displayWidth(current);
		}

		out.push(current.trimEnd());
		if (out.length >= maxLines) {
			return out.slice(0, maxLines);
		}
	}

	return out.slice(0, maxLines);
}
