// Draws a window of pre-built lines (detail tabs, compare, help, log); the cursor's line is inverse.
import {Box, Text} from 'ink';
import type {Line, Segment} from '../state/lines.js';
import {cutToWidth, displayWidth, ellipsis, toAscii} from '../state/text.js';
import type {TerminalEnv} from '../state/types.js';
import {styleOf} from './theme.js';

export type LineViewProps = {
	lines: readonly Line[];
	scroll: number;
	rows: number;
	width: number;
	env: TerminalEnv;
	/** Index of the cursor's line, highlighted when `focused`. */
	cursor?: number;
	focused?: boolean;
};

/** Cuts segments to `width` columns with the locale's ellipsis (Ink's own truncation would add '…'). */
export function fitSegments(input: readonly Segment[], width: number, env: TerminalEnv): readonly Segment[] {
	const segments = env.unicode ? input : input.map(segment => ({...segment, text: toAscii(segment.text)}));
	const total = segments.reduce((sum, s) => sum + displayWidth(s.text), 0);
	if (total <= width) {
		return segments;
	}

	const mark = ellipsis(env);
	const budget = Math.max(0, width - mark.length);
	const out: Segment[] = [];
	let used = 0;
	for (const segment of segments) {
		const w = displayWidth(segment.text);
		if (used + w <= budget) {
			out.push(segment);
			used += w;
			continue;
		}

		out.push({...segment, text: cutToWidth(segment.text, budget - used) + mark});
		break;
	}

	return out;
}

export function LineRow({line, env, highlighted, width}: {line: Line; env: TerminalEnv; highlighted: boolean; width?: number}) {
	const segments = width === undefined ? line.segments : fitSegments(line.segments, width, env);
	return (
		<Text wrap="truncate-end" inverse={highlighted}>
			{segments.length === 0 ? ' ' : segments.map((segment, index) => (
				// Segments never reorder, so the index is a stable key.
				<Text key={index} {...styleOf(segment.role, env)}>
					{segment.text}
				</Text>
			))}
		</Text>
	);
}

export function LineView({lines, scroll, rows, width, env, cursor, focused = false}: LineViewProps) {
	const maxScroll = Math.max(0, lines.length - rows);
	const top = Math.min(Math.max(0, scroll), maxScroll);
	const shown = lines.slice(top, top + rows);
	return (
		<Box flexDirection="column" width={width} height={rows} overflow="hidden">
			{shown.map((line, index) => (
				<LineRow key={top + index} line={line} env={env} width={width} highlighted={focused && cursor === top + index && line.key !== undefined} />
			))}
		</Box>
	);
}
