// Metadata tab: every raw key/value, searchable; JSON values pretty-printed over several lines, long
// text wrapped. Every line is selectable (the cursor scrolls line by line) and carries its key, which
// is what issue 5's in-place editing (`e`, `d`) will act on.
import {prettyJson, sanitizeText} from '../lora/sanitize.js';
import {blank, line, seg, type Line} from './lines.js';
import {clean, displayWidth, fit, wrap} from './text.js';
import type {TerminalEnv} from './types.js';

/** Lines shown for one long value before "… N more lines". */
const maxValueLines = 400;

/** Arrays of scalars up to this many characters stay on one line ([384, 640]). */
const inlineArrayChars = 60;

/**
 * Pretty-prints a JSON metadata value (H2's prettyJson decides what is JSON and safe to expand) with
 * two-space indents, keeping short arrays of numbers and strings on one line.
 */
export function prettyJsonLines(raw: string): string[] | null {
	const pretty = prettyJson(raw);
	if (pretty === null) {
		return null;
	}

	const lines: string[] = [];
	const emit = (value: unknown, indent: string, prefix: string, suffix: string): void => {
		if (Array.isArray(value)) {
			const scalars = value.every(item => item === null || typeof item !== 'object');
			const inline = scalars ? JSON.stringify(value).replaceAll(',', ', ') : '';
			if (value.length === 0 || (scalars && inline.length <= inlineArrayChars)) {
				lines.push(`${indent}${prefix}${value.length === 0 ? '[]' : inline}${suffix}`);
				return;
			}

			lines.push(`${indent}${prefix}[`);
			for (const [index, item] of value.entries()) {
				emit(item, `${indent}  `, '', index < value.length - 1 ? ',' : '');
			}

			lines.push(`${indent}]${suffix}`);
			return;
		}

		if (value !== null && typeof value === 'object') {
			const entries = Object.entries(value);
			if (entries.length === 0) {
				lines.push(`${indent}${prefix}{}${suffix}`);
				return;
			}

			lines.push(`${indent}${prefix}{`);
			for (const [index, [key, item]] of entries.entries()) {
				emit(item, `${indent}  `, `${JSON.stringify(key)}: `, index < entries.length - 1 ? ',' : '');
			}

			lines.push(`${indent}}${suffix}`);
			return;
		}

		lines.push(`${indent}${prefix}${JSON.stringify(value)}${suffix}`);
	};

	emit(JSON.parse(pretty) as unknown, '', '', '');
	return lines;
}

export function metadataKeys(metadata: Readonly<Record<string, string>>, query: string): string[] {
	const q = query.trim().toLowerCase();
	return Object.keys(metadata)
		.filter(key => q === '' || key.toLowerCase().includes(q) || (metadata[key] ?? '').toLowerCase().includes(q))
		.sort((a, b) => a.localeCompare(b));
}

export function metadataLines(metadata: Readonly<Record<string, string>> | undefined, query: string, width: number, env: TerminalEnv): Line[] {
	if (!metadata || Object.keys(metadata).length === 0) {
		return [line([seg('No __metadata__ in this file (nothing about its training was saved).', 'dim')])];
	}

	const total = Object.keys(metadata).length;
	const keys = metadataKeys(metadata, query);
	const lines: Line[] = [];
	const q = query.trim();
	lines.push(
		line([
			seg(q === '' ? `${total} keys` : `${keys.length} of ${total} keys match "${clean(q, env, 40)}"`, 'dim'),
			seg(q === '' ? '  (/ to search)' : '  (/ to change, empty to clear)', 'dim'),
		]),
	);
	if (keys.length === 0) {
		return lines;
	}

	const keyWidth = Math.min(Math.max(...keys.map(key => displayWidth(clean(key, env, 60))), 8), Math.max(10, Math.floor(width * 0.38)));
	const valueWidth = Math.max(10, width - keyWidth - 2);
	const indent = ' '.repeat(keyWidth + 2);
	for (const key of keys) {
		const raw = metadata[key] ?? '';
		const keyText = fit(clean(key, env, 200), keyWidth, env);
		const keyRole = q !== '' && key.toLowerCase().includes(q.toLowerCase()) ? 'match' : 'label';
		const single = clean(raw, env, valueWidth + 1);
		const pretty = displayWidth(single) > valueWidth ? prettyJsonLines(raw) : null;
		let valueLines: string[];
		if (pretty !== null) {
			valueLines = [];
			for (const jsonLine of pretty) {
				// Continuation lines keep the JSON indent (plus two), so nesting stays readable.
				const text = sanitizeText(jsonLine, {singleLine: true, ascii: !env.unicode});
				const indentWidth = Math.min(text.length - text.trimStart().length, Math.floor(valueWidth / 2));
				const pieces = wrap(text.trimStart(), Math.max(4, valueWidth - indentWidth - 2));
				const first = pieces.shift() ?? '';
				valueLines.push(' '.repeat(indentWidth) + first, ...pieces.map(piece => ' '.repeat(indentWidth + 2) + piece));
				if (valueLines.length > maxValueLines) {
					break;
				}
			}
		} else if (displayWidth(single) > valueWidth) {
			valueLines = wrap(sanitizeText(raw, {ascii: !env.unicode, maxLength: valueWidth * (maxValueLines + 1)}), valueWidth, maxValueLines + 1);
		} else {
			valueLines = [single === '' ? '""' : single];
		}

		let more = 0;
		if (valueLines.length > maxValueLines) {
			more = valueLines.length - maxValueLines;
			valueLines = valueLines.slice(0, maxValueLines);
		}

		for (const [index, text] of valueLines.entries()) {
			lines.push(line(index === 0 ? [seg(keyText, keyRole), seg('  '), seg(text, 'value')] : [seg(indent), seg(text, 'value')], key));
		}

		if (more > 0) {
			lines.push(line([seg(indent), seg(`${env.unicode ? '…' : '...'} more not shown (${raw.length} characters in all)`, 'dim')], key));
		}
	}

	lines.push(blank);
	return lines;
}
