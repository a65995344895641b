// Columns of the file list: which ones fit a given width (dropped by priority), and each row as
// segments. Pure, so a 10,000-row folder costs only the rows on screen.
import {formatAge, formatBytes, formatNumber} from './format.js';
import {glyphs} from './glyphs.js';
import {seg, type Segment} from './lines.js';
import {fit} from './text.js';
import type {FileRow, SortKey, TerminalEnv} from './types.js';

export type ColumnId = 'name' | 'folder' | 'size' | 'modified' | 'arch' | 'type' | 'rank' | 'epoch' | 'output';

type ColumnSpec = {id: ColumnId; title: string; width: number; align: 'left' | 'right'; sort?: SortKey};

/** In display order; `width` is the fixed width (name takes what is left). */
const specs: readonly ColumnSpec[] = [
	{id: 'name', title: 'name', width: 0, align: 'left', sort: 'name'},
	{id: 'folder', title: 'folder', width: 12, align: 'left'},
	{id: 'size', title: 'size', width: 9, align: 'right', sort: 'size'},
	{id: 'modified', title: 'modified', width: 10, align: 'right', sort: 'modified'},
	{id: 'arch', title: 'arch', width: 5, align: 'left'},
	{id: 'type', title: 'type', width: 5, align: 'left'},
	{id: 'rank', title: 'rank/a', width: 8, align: 'right', sort: 'rank'},
	{id: 'epoch', title: 'ep', width: 4, align: 'right', sort: 'epoch'},
	{id: 'output', title: 'output name', width: 16, align: 'left'},
];

/** Dropped first to last when the pane is too narrow. */
const dropOrder: readonly ColumnId[] = ['output', 'folder', 'type', 'epoch', 'arch', 'size', 'rank', 'modified'];

const minNameWidth = 18;
/** Mark + badge prefix: "● new " is 6 columns. */
export const prefixWidth = 6;

export type ListColumn = ColumnSpec & {width: number};

export function listColumns(width: number): ListColumn[] {
	let kept = new Set<ColumnId>(specs.map(s => s.id));
	const fixedWidth = (): number => specs.filter(s => kept.has(s.id) && s.id !== 'name').reduce((sum, s) => sum + s.width + 1, 0);
	for (const id of dropOrder) {
		if (width - prefixWidth - fixedWidth() >= minNameWidth) {
			break;
		}

		kept = new Set([...kept].filter(k => k !== id));
	}

	const nameWidth = Math.max(8, width - prefixWidth - fixedWidth());
	return specs.filter(s => kept.has(s.id)).map(s => (s.id === 'name' ? {...s, width: nameWidth} : {...s}));
}

export function headerSegments(columns: readonly ListColumn[], sort: {key: SortKey; descending: boolean}, env: TerminalEnv): Segment[] {
	const g = glyphs(env);
	const out: Segment[] = [seg(' '.repeat(prefixWidth))];
	for (const [index, c] of columns.entries()) {
		const arrow = c.sort === sort.key ? (sort.descending ? g.down : g.up) : '';
		const title = c.align === 'right' ? arrow + c.title : c.title + arrow;
		out.push(seg(fit(title, c.width, env, c.align), c.sort === sort.key ? 'accent' : 'heading'));
		if (index < columns.length - 1) {
			out.push(seg(' '));
		}
	}

	return out;
}

function rankText(row: FileRow): string {
	const s = row.summary;
	const rank = s.rank === undefined ? s.rankText : String(s.rank);
	const alpha = s.alpha === undefined ? s.alphaText : formatNumber(s.alpha, 3);
	if (rank === undefined && alpha === undefined) {
		return '';
	}

	return `${rank ?? '?'}/${alpha ?? '?'}`;
}

function cell(row: FileRow, id: ColumnId, now: number): string {
	const s = row.summary;
	switch (id) {
		case 'name': {
			return row.name;
		}

		case 'folder': {
			return row.folder;
		}

		case 'size': {
			return formatBytes(row.sizeBytes);
		}

		case 'modified': {
			return formatAge(row.mtimeMs, now);
		}

		case 'arch': {
			return s.arch ?? '';
		}

		case 'type': {
			return s.networkType ?? '';
		}

		case 'rank': {
			return rankText(row);
		}

		case 'epoch': {
			return s.epoch === undefined ? '' : String(s.epoch);
		}

		case 'output': {
			return s.outputName ?? '';
		}
	}
}

/** One list row as segments; failed rows show their reason where the metadata columns would be. */
export function rowSegments(row: FileRow, columns: readonly ListColumn[], marked: boolean, now: number, env: TerminalEnv): Segment[] {
	const g = glyphs(env);
	const badge = row.status === 'error' ? 'ERR' : row.isNew ? 'new' : row.status === 'pending' ? g.dot.repeat(3).slice(0, 3) : '';
	const out: Segment[] = [seg(marked ? `${g.mark} ` : '  ', 'picked'), seg(fit(badge, 3, env) + ' ', row.status === 'error' ? 'error' : row.isNew ? 'accent' : 'dim')];
	const errorFrom = columns.findIndex(c => c.id !== 'name');
	for (const [index, c] of columns.entries()) {
		if (row.status === 'error' && errorFrom >= 0 && index >= errorFrom) {
			const rest = columns.slice(index).reduce((sum, col) => sum + col.width + 1, -1);
			out.push(seg(fit(`${g.cross} ${row.error ?? 'unreadable'}`, rest, env), 'error'));
			break;
		}

		out.push(seg(fit(cell(row, c.id, now), c.width, env, c.align), c.id === 'name' ? (row.status === 'error' ? 'error' : 'text') : 'dim'));
		if (index < columns.length - 1) {
			out.push(seg(' '));
		}
	}

	return out;
}
