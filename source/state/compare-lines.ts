// Compare view lines. Two files: metadata diff side by side (added / removed / changed, changed
// values highlighted, JSON fields diffed by content), rank/alpha and structure differences, UNet/TE
// totals and per-block norms of both with their difference. Three or more epochs of one run: line
// charts (asciichart) of the UNet/TE totals and of one block's norm across epochs, and the block table.
// The comparison itself is H7's (source/lora/compare.ts); this file lays it out.
import asciichart from 'asciichart';
import {compareFiles, epochSeries, type CompareInput, type MetadataChange, type NormChange} from '../lora/compare.js';
import {trainingOf} from './entry-shape.js';
import {formatDelta, formatNumber, formatPercent} from './format.js';
import {bar, glyphs, progressBar} from './glyphs.js';
import {blank, line, seg, type Line, type Role} from './lines.js';
import {statsFor} from './selectors.js';
import {clean, fit, truncate} from './text.js';
import type {AppState, FileRow, StatsSlot, TerminalEnv} from './types.js';

function inputOf(row: FileRow, slot: StatsSlot | undefined): CompareInput | undefined {
	const entry = row.entry;
	const training = trainingOf(entry);
	if (!entry?.header || !entry.model || !training) {
		return undefined;
	}

	return {header: entry.header, model: entry.model, training, stats: slot?.state === 'done' ? slot.result ?? null : null};
}

function statsProgress(rows: FileRow[], slots: Array<StatsSlot | undefined>, width: number, env: TerminalEnv): Line[] {
	const lines: Line[] = [];
	for (const [index, row] of rows.entries()) {
		const slot = slots[index];
		if (slot?.state === 'done') {
			continue;
		}

		const what = slot?.state === 'error' ? `failed: ${slot.error ?? ''}` : slot?.state === 'cancelled' ? 'cancelled' : undefined;
		lines.push(
			line([
				seg(`${glyphs(env).norm} of ${truncate(row.name, Math.max(10, width - 50), env)} `, 'dim'),
				what === undefined ? seg(progressBar(slot?.done ?? 0, slot?.total ?? 0, 24, env), 'accent') : seg(what, 'error'),
			]),
		);
	}

	return lines;
}

function valueText(raw: string | null, env: TerminalEnv, width: number): string {
	return raw === null ? '' : clean(raw, env, width);
}

function changeLines(change: MetadataChange, widths: {key: number; value: number}, env: TerminalEnv): Line[] {
	const sign = change.kind === 'added' ? '+' : change.kind === 'removed' ? '-' : '~';
	const role: Role = change.kind === 'added' ? 'added' : change.kind === 'removed' ? 'removed' : 'changed';
	const lines: Line[] = [
		line(
			[
				seg(`${sign} `, role),
				seg(fit(clean(change.key, env, 200), widths.key, env), 'label'),
				seg(' '),
				seg(fit(valueText(change.a, env, widths.value + 1), widths.value, env), change.kind === 'removed' ? 'removed' : change.kind === 'changed' ? 'changed' : 'dim'),
				seg(' '),
				seg(fit(valueText(change.b, env, widths.value + 1), widths.value, env), change.kind === 'added' ? 'added' : change.kind === 'changed' ? 'changed' : 'dim'),
			],
			`meta:${change.key}`,
		),
	];
	// JSON fields: what changed inside, a few lines each.
	const inner = change.json ?? [];
	for (const item of inner.slice(0, 8)) {
		const show = (value: unknown): string => (value === undefined ? '' : clean(typeof value === 'string' ? value : JSON.stringify(value) ?? String(value), env, widths.value + 1));
		lines.push(
			line([
				seg('    '),
				seg(fit(clean(item.path, env, 200), widths.key - 2, env), 'dim'),
				seg(' '),
				seg(fit(show(item.a), widths.value, env), item.kind === 'added' ? 'dim' : 'changed'),
				seg(' '),
				seg(fit(show(item.b), widths.value, env), item.kind === 'removed' ? 'dim' : 'changed'),
			]),
		);
	}

	if (inner.length > 8 || change.jsonTruncated) {
		lines.push(line([seg(`    ${glyphs(env).ellipsis} ${inner.length - 8}${change.jsonTruncated ? '+' : ''} more changes inside`, 'dim')]));
	}

	return lines;
}

function normRow(label: string, change: NormChange, maxAbsDelta: number, width: number, env: TerminalEnv, key?: string): Line {
	const barWidth = Math.max(4, Math.min(24, width - 58));
	const fraction = change.delta === null || maxAbsDelta === 0 ? 0 : Math.abs(change.delta) / maxAbsDelta;
	return line(
		[
			seg(fit(clean(label, env, 20), 8, env), 'label'),
			seg(fit(formatNumber(change.a), 11, env, 'right'), 'value'),
			seg(fit(formatNumber(change.b), 11, env, 'right'), 'value'),
			seg(fit(formatDelta(change.delta), 12, env, 'right'), change.delta === null ? 'dim' : change.delta >= 0 ? 'added' : 'removed'),
			seg(fit(change.relative === null ? '' : formatPercent(change.relative), 8, env, 'right'), 'dim'),
			seg('  '),
			seg(bar(fraction, barWidth, env), change.delta !== null && change.delta < 0 ? 'removed' : 'added'),
		],
		key,
	);
}

export function pairLines(state: AppState, a: FileRow, b: FileRow, width: number): Line[] {
	const {env} = state;
	const slotA = statsFor(state, a.path);
	const slotB = statsFor(state, b.path);
	const inputA = inputOf(a, slotA);
	const inputB = inputOf(b, slotB);
	const lines: Line[] = [
		line([seg('A ', 'removed'), seg(a.name, 'heading'), seg(a.summary.epoch === undefined ? '' : `  epoch ${a.summary.epoch}`, 'dim'), seg(a.folder === '.' ? '' : `  ${a.folder}`, 'dim')]),
		line([seg('B ', 'added'), seg(b.name, 'heading'), seg(b.summary.epoch === undefined ? '' : `  epoch ${b.summary.epoch}`, 'dim'), seg(b.folder === '.' ? '' : `  ${b.folder}`, 'dim')]),
	];
	if (!inputA || !inputB) {
		lines.push(line([seg('Both files must load to be compared.', 'error')]));
		return lines;
	}

	const comparison = compareFiles(inputA, inputB);
	// Structure and rank/alpha: only what differs.
	const s = comparison.structure;
	const differences: string[] = [];
	for (const [label, pair] of [
		['arch', s.arch],
		['network', s.networkType],
		['keys', s.keyStyle],
		['dtype', s.dtype],
		['modules', s.modules],
		['tensors', s.tensors],
		['rank', comparison.rankAlpha.rank],
		['alpha', comparison.rankAlpha.alpha],
	] as const) {
		if (pair[0] !== pair[1]) {
			differences.push(`${label} ${String(pair[0])} ${env.unicode ? '→' : '->'} ${String(pair[1])}`);
		}
	}

	const t = comparison.tensors;
	const data = t.identical === true ? 'tensor data identical' : t.sameLayout ? 'same tensor layout' : `tensor layout differs (${t.onlyInA.length} only in A, ${t.onlyInB.length} only in B, ${t.reshaped.length} reshaped)`;
	lines.push(line([seg(differences.length === 0 ? 'Same structure' : clean(differences.join(', '), env, 400), differences.length === 0 ? 'ok' : 'changed'), seg(`; ${data}`, 'dim')]));
	if (comparison.rankAlpha.modules.length > 0) {
		lines.push(line([seg(`${comparison.rankAlpha.modules.length} modules differ in rank or alpha`, 'changed')]));
	}

	// Norms.
	lines.push(blank, line([seg(`${glyphs(env).norm}  `, 'heading'), seg(fit('', 2, env)), seg(fit('A', 11, env, 'right'), 'heading'), seg(fit('B', 11, env, 'right'), 'heading'), seg(fit('B - A', 12, env, 'right'), 'heading'), seg(fit('rel', 8, env, 'right'), 'heading')]));
	const progress = statsProgress([a, b], [slotA, slotB], width, env);
	if (comparison.totals && comparison.blocks) {
		const maxDelta = Math.max(0, ...comparison.blocks.map(block => Math.abs(block.delta ?? 0)));
		lines.push(normRow('UNet', comparison.totals.unet, Math.max(Math.abs(comparison.totals.unet.delta ?? 0), Math.abs(comparison.totals.te.delta ?? 0)), width, env, 'total:unet'));
		lines.push(normRow('TE', comparison.totals.te, Math.max(Math.abs(comparison.totals.unet.delta ?? 0), Math.abs(comparison.totals.te.delta ?? 0)), width, env, 'total:te'));
		lines.push(blank);
		for (const block of comparison.blocks) {
			lines.push(normRow(block.block, block, maxDelta, width, env, `block:${block.block}`));
		}
	} else {
		lines.push(...progress);
	}

	// Metadata.
	const m = comparison.metadata;
	lines.push(
		blank,
		line([
			seg('Metadata  ', 'heading'),
			seg(`${m.changed.length} changed`, 'changed'),
			seg(', '),
			seg(`${m.added.length} added`, 'added'),
			seg(', '),
			seg(`${m.removed.length} removed`, 'removed'),
			seg(`, ${m.unchanged} same${m.formattingOnly.length > 0 ? ` (${m.formattingOnly.length} differ only in JSON formatting)` : ''}`, 'dim'),
		]),
	);
	const keyWidth = Math.min(28, Math.max(12, Math.floor(width * 0.25)));
	const valueWidth = Math.max(8, Math.floor((width - keyWidth - 4) / 2));
	lines.push(line([seg('  '), seg(fit('key', keyWidth, env), 'dim'), seg(' '), seg(fit('A', valueWidth, env), 'dim'), seg(' '), seg(fit('B', valueWidth, env), 'dim')]));
	for (const change of [...m.changed, ...m.added, ...m.removed]) {
		lines.push(...changeLines(change, {key: keyWidth, value: valueWidth}, env));
	}

	// Tags.
	if (comparison.tags && comparison.tags.merged.length > 0) {
		const tg = comparison.tags;
		lines.push(blank, line([seg('Tag counts  ', 'heading'), seg(`${tg.merged.length} tags changed, ${tg.onlyInA} only in A, ${tg.onlyInB} only in B`, 'dim')]));
		for (const tag of tg.merged.slice(0, 30)) {
			lines.push(
				line([
					seg(fit(clean(tag.tag, env, 200), keyWidth + 2, env), 'label'),
					seg(fit(String(tag.a), 8, env, 'right')),
					seg(fit(String(tag.b), 8, env, 'right')),
					seg(fit(formatDelta(tag.delta), 8, env, 'right'), tag.delta > 0 ? 'added' : 'removed'),
				]),
			);
		}
	}

	return lines;
}

/** A series resampled to `points` by linear interpolation, so a few epochs fill the chart's width. */
export function resample(values: readonly number[], points: number): number[] {
	if (values.length <= 1 || points <= values.length) {
		return [...values];
	}

	const out: number[] = [];
	for (let i = 0; i < points; i++) {
		const x = (i / (points - 1)) * (values.length - 1);
		const lo = Math.floor(x);
		const hi = Math.min(values.length - 1, lo + 1);
		const f = x - lo;
		out.push(values[lo]! * (1 - f) + values[hi]! * f);
	}

	return out;
}

function chartLines(title: string, values: readonly number[], epochs: readonly string[], width: number, env: TerminalEnv, role: Role): Line[] {
	const finite = values.filter(v => Number.isFinite(v));
	if (finite.length < 2) {
		return [line([seg(`${title}: not enough values`, 'dim')])];
	}

	const labelWidth = 10;
	const plotWidth = Math.max(values.length, Math.min(72, width - labelWidth - 4));
	const series = resample(values, plotWidth);
	const chart = asciichart.plot(series, {
		height: 6,
		symbols: glyphs(env).chart,
		format: (x: number) => fit(formatNumber(x, 3), labelWidth, env, 'right'),
	});
	const lines: Line[] = [line([seg(title, 'heading')])];
	for (const text of chart.split('\n')) {
		// The first labelWidth + 2 columns are the axis labels.
		lines.push(line([seg(text.slice(0, labelWidth + 2), 'dim'), seg(text.slice(labelWidth + 2), role)]));
	}

	// Epoch labels under their x positions.
	let axis = ' '.repeat(labelWidth + 2);
	for (const [index, label] of epochs.entries()) {
		const x = labelWidth + 2 + Math.round((index / Math.max(1, epochs.length - 1)) * (series.length - 1));
		const start = Math.max(axis.length, x - Math.floor(label.length / 2));
		axis = axis.padEnd(start) + label;
	}

	lines.push(line([seg(truncate(axis, width, env), 'dim')]));
	return lines;
}

export function seriesLines(state: AppState, rows: FileRow[], width: number): Line[] {
	const {env} = state;
	const slots = rows.map(row => statsFor(state, row.path));
	const lines: Line[] = [
		line([seg(`Epoch series: ${rows.length} files of `, 'heading'), seg(clean(rows[0]?.summary.outputName ?? rows[0]?.name ?? '', env, 60), 'accent')]),
		line([seg(truncate(rows.map(row => `${row.summary.epoch ?? '?'}: ${row.name}`).join('  '), width, env), 'dim')]),
	];
	const progress = statsProgress(rows, slots, width, env);
	if (progress.length > 0) {
		lines.push(blank, ...progress);
		return lines;
	}

	const entries = rows.flatMap((row, index) => {
		const training = trainingOf(row.entry);
		const stats = slots[index]?.result;
		return row.entry?.header && training && stats ? [{header: row.entry.header, training, stats}] : [];
	});
	const series = epochSeries(entries);
	const epochs = series.points.map(point => String(point.epoch ?? '?'));
	for (const warning of series.warnings) {
		lines.push(line([seg(`${glyphs(env).warn} ${warning}`, 'warn')]));
	}

	lines.push(blank, ...chartLines(`UNet ${glyphs(env).norm} by epoch`, series.unet, epochs, width, env, 'bar'));
	lines.push(blank, ...chartLines(`TE ${glyphs(env).norm} by epoch`, series.te, epochs, width, env, 'bar-alt'));
	const blockCount = series.blocks.length;
	if (blockCount > 0) {
		const block = series.blocks[Math.min(state.compare?.block ?? 0, blockCount - 1)]!;
		const values = block.values.map(v => v ?? Number.NaN);
		lines.push(blank, ...chartLines(`Block ${block.block} ${glyphs(env).norm} by epoch (${env.unicode ? '←/→' : 'left/right'}: other block)`, values, epochs, width, env, 'accent'));
	}

	// The table of every block across epochs (as many epochs as fit).
	const columnWidth = 10;
	const fitting = Math.max(1, Math.floor((width - 8) / columnWidth));
	const shown = series.points.slice(-fitting);
	const offset = series.points.length - shown.length;
	lines.push(blank, line([seg(fit('block', 8, env), 'heading'), ...shown.map(point => seg(fit(`ep ${point.epoch ?? '?'}`, columnWidth, env, 'right'), 'heading'))]));
	lines.push(line([seg(fit('UNet', 8, env), 'label'), ...series.unet.slice(offset).map(v => seg(fit(formatNumber(v), columnWidth, env, 'right'), 'value'))]));
	lines.push(line([seg(fit('TE', 8, env), 'label'), ...series.te.slice(offset).map(v => seg(fit(formatNumber(v), columnWidth, env, 'right'), 'value'))]));
	for (const row of series.blocks) {
		lines.push(line([seg(fit(clean(row.block, env, 12), 8, env), 'label'), ...row.values.slice(offset).map(v => seg(fit(v === null ? '-' : formatNumber(v), columnWidth, env, 'right'), 'value'))], `block:${row.block}`));
	}

	return lines;
}

export function compareLines(state: AppState, width: number): Line[] {
	const rows = (state.compare?.paths ?? []).map(path => state.rows.get(path)).filter((row): row is FileRow => row !== undefined);
	if (rows.length < 2) {
		return [line([seg('Nothing to compare: the files are gone.', 'dim')])];
	}

	return rows.length === 2 ? pairLines(state, rows[0]!, rows[1]!, width) : seriesLines(state, rows, width);
}

let last: {deps: unknown[]; lines: Line[]} | undefined;

/** compareLines, rebuilt only when the compared rows, their stats, the charted block or the width change. */
export function compareLinesMemo(state: AppState, width: number): Line[] {
	const paths = state.compare?.paths ?? [];
	const deps: unknown[] = [width, state.env, state.compare?.block, ...paths, ...paths.map(path => state.rows.get(path)), ...paths.map(path => statsFor(state, path))];
	if (last && last.deps.length === deps.length && last.deps.every((d, i) => Object.is(d, deps[i]))) {
		return last.lines;
	}

	const lines = compareLines(state, width);
	last = {deps, lines};
	return lines;
}
