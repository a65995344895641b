// The metadata editor as lines: the key, the value being typed wrapped to the width with the cursor
// shown, a window of it around the cursor, and the keys. The value is the raw metadata string, so
// every character is made inert for display (controls, escapes and bidi marks become a visible
// stand-in) while the text itself is kept exactly as typed. Pure and tested without rendering.
import {displayWidth} from '../lora/sanitize.js';
import {blank, line, seg, type Line, type Segment} from './lines.js';
import {clean, fit} from './text.js';
import type {EditState} from './tools-types.js';
import type {TerminalEnv} from './types.js';

/** One code point as it is drawn: itself when printable, a stand-in otherwise (always one column or more). */
export function displayChar(ch: string, env: TerminalEnv): string {
	const code = ch.codePointAt(0) ?? 0;
	if (code >= 0x20 && code < 0x7F) {
		return ch;
	}

	if (ch === '\n') {
		return env.unicode ? '↵' : '|';
	}

	if (ch === '\t') {
		return env.unicode ? '→' : '>';
	}

	if (!env.unicode && code >= 0x80) {
		return '?';
	}

	const shown = clean(ch, env);
	// Controls, escapes, bidi and zero-width marks: a visible stand-in keeps the cursor where it is.
	return shown === '' || displayWidth(shown) === 0 || shown !== ch ? '?' : shown;
}

type Cell = {text: string; width: number};

/**
 * The value wrapped to `width` columns as rows of cells, with the row and column of the cursor. The
 * cursor may sit after the last character (typing appends there).
 */
export function wrapForEdit(text: string, cursor: number, width: number, env: TerminalEnv): {rows: Cell[][]; cursorRow: number; cursorCol: number} {
	const rows: Cell[][] = [[]];
	let used = 0;
	let cursorRow = 0;
	let cursorCol = 0;
	let index = 0;
	for (const ch of text) {
		const shown = displayChar(ch, env);
		const w = Math.max(1, displayWidth(shown));
		if (used + w > width) {
			rows.push([]);
			used = 0;
		}

		if (index === cursor) {
			cursorRow = rows.length - 1;
			cursorCol = rows.at(-1)!.length;
		}

		rows.at(-1)!.push({text: shown, width: w});
		used += w;
		index++;
	}

	if (cursor >= index) {
		if (used + 1 > width) {
			rows.push([]);
		}

		cursorRow = rows.length - 1;
		cursorCol = rows.at(-1)!.length;
	}

	return {rows, cursorRow, cursorCol};
}

function rowLine(cells: Cell[], cursorCol: number | undefined): Line {
	const segments: Segment[] = [];
	if (cursorCol === undefined) {
		segments.push(seg(cells.map(c => c.text).join(''), 'value'));
		return line(segments);
	}

	const before = cells.slice(0, cursorCol).map(c => c.text).join('');
	const at = cells[cursorCol]?.text ?? ' ';
	const after = cells.slice(cursorCol + 1).map(c => c.text).join('');
	segments.push(seg(before, 'value'), seg(at, 'selected'), seg(after, 'value'));
	return line(segments);
}

export type EditLines = {title: string; lines: Line[]};

/** The editor's lines for `rows` rows of `width` columns. */
export function editLines(edit: EditState, fileName: string, width: number, rows: number, env: TerminalEnv): EditLines {
	const name = clean(fileName, env, 200);
	const naming = edit.mode === 'new-key';
	const title = naming ? `New metadata key in ${name}` : `${edit.mode === 'new-value' ? 'New key' : 'Edit'} ${clean(edit.key, env, 80)} in ${name}`;
	const head: Line[] = [
		line([seg(fit(naming ? 'Key name' : 'Key', 10, env), 'label'), seg(naming ? 'type the new key\'s name, then enter' : clean(edit.key, env, 400), naming ? 'dim' : 'text')]),
		line([seg(fit(naming ? 'Name' : 'Value', 10, env), 'label'), seg(`${[...edit.text].length} characters`, 'dim')]),
	];
	const footer: Line[] = [
		blank,
		line([seg(naming ? '↵ next: its value' : '↵ saves into the file (tensors copied unchanged, replaced atomically)', 'dim')]),
		line([seg('esc cancels · ←/→ move · C-a/C-e start/end · ⌫ deletes · C-u clears', 'dim')]),
	];
	if (edit.mode === 'value') {
		footer.splice(1, 0, line([seg(fit('Was', 10, env), 'label'), seg(edit.original === '' ? '""' : clean(edit.original, env, Math.max(10, width - 12)), 'dim')]));
	}

	const wrapped = wrapForEdit(edit.text, edit.cursor, Math.max(4, width), env);
	let valueRows = Math.max(1, rows - head.length - footer.length);
	if (wrapped.rows.length > valueRows) {
		valueRows = Math.max(1, valueRows - 1); // Room for the "rows a-b of n" line.
	}

	// The window follows the cursor, keeping it on the last visible row while typing at the end.
	const top = Math.max(0, Math.min(wrapped.cursorRow - valueRows + 1, wrapped.rows.length - valueRows));
	const shown = wrapped.rows.slice(top, top + valueRows).map((cells, i) => rowLine(cells, top + i === wrapped.cursorRow ? wrapped.cursorCol : undefined));
	const more = wrapped.rows.length > valueRows ? [line([seg(`rows ${top + 1}-${top + shown.length} of ${wrapped.rows.length}`, 'dim')])] : [];
	return {title, lines: [...head, ...shown, ...more, ...footer]};
}
