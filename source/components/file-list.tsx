// The file list pane: column header plus only the rows that fit (windowed), so thousands of files
// render as fast as twenty. Purely presentational: rows, scroll and selection come from the reducer.
import {Box, Text} from 'ink';
import {glyphs} from '../state/glyphs.js';
import {headerSegments, listColumns, rowSegments} from '../state/list-columns.js';
import type {FileRow, SortKey, TerminalEnv} from '../state/types.js';
import {LineRow} from './line-view.js';
import {borderColor} from './theme.js';

export type FileListProps = {
	rows: readonly FileRow[];
	/** Index (in `rows`) of the selected row, or -1. */
	selectedIndex: number;
	marks: ReadonlySet<string>;
	sort: {key: SortKey; descending: boolean};
	width: number;
	height: number;
	focused: boolean;
	env: TerminalEnv;
	now: number;
	/** Shown instead of rows when there are none. */
	emptyText: string;
	/** "12-40 of 1000" style position, drawn in the bottom border area. */
	position: string;
};

export function FileList({rows, selectedIndex, marks, sort, width, height, focused, env, now, emptyText, position}: FileListProps) {
	const inner = Math.max(0, width - 2);
	const columns = listColumns(inner);
	const dataRows = Math.max(0, height - 4);
	return (
		<Box flexDirection="column" width={width} height={height} borderStyle={glyphs(env).borderStyle} borderColor={borderColor(focused, env)} overflow="hidden">
			<LineRow line={{segments: headerSegments(columns, sort, env)}} env={env} width={inner} highlighted={false} />
			<Box flexDirection="column" height={dataRows} overflow="hidden">
				{rows.length === 0 ? (
					<Text dimColor={env.color}>{emptyText}</Text>
				) : (
					rows.map((row, index) => (
						<LineRow key={row.path} line={{segments: rowSegments(row, columns, marks.has(row.path), now, env)}} env={env} width={inner} highlighted={index === selectedIndex} />
					))
				)}
			</Box>
			<Text wrap="truncate-end" dimColor={env.color}>
				{position}
			</Text>
		</Box>
	);
}
