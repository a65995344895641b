// `lorascope compare <a> <b> [--json]` and `lorascope compare <files...> --epochs [--json]`.
// Exit codes: 0 done, 1 a file could not be read, 2 usage error.
import path from 'node:path';
import process from 'node:process';
import {parseArgs} from 'node:util';
import asciichart from 'asciichart';
import {
	compareFiles, compareTensorData, epochSeries, type Comparison, type CompareInput, type EpochSeries, type NormChange,
} from '../lora/compare.js';
import {parseTraining} from '../lora/metadata.js';
import {loadLoraModel} from '../lora/model.js';
import {errorReason, readHeader, TensorReader} from '../lora/safetensors.js';
import {sanitizeLine} from '../lora/sanitize.js';
import type {GramKernels} from '../lora/types.js';
import {jsonForTerminal} from './meta.js';
import {chooseStatsKernels, statsOf} from './stats-kernels.js';

const usage = `Usage:
  lorascope compare <a.safetensors> <b.safetensors> [--json] [--no-stats] [--all]
  lorascope compare <files of one run...> --epochs [--json]

Two files: metadata diff (JSON fields by content), tag-count changes, per-block norm changes,
rank/alpha differences and whether the tensor data is identical.
--epochs: block norms and UNet/TE totals across the epochs of one run, as a table and a chart.
--no-stats skips the norms (no tensor math); --all lists every change instead of the first ones.
`;

class UsageError extends Error {}

type Flags = {json?: boolean; epochs?: boolean; 'no-stats'?: boolean; all?: boolean; help?: boolean};

/**
 * Read a file for comparison: header, model, parsed metadata and, given kernels, its norms
 * (stats-kernels.ts: onnxruntime and helper threads for large files).
 */
export async function loadCompareInput(filePath: string, kernels: GramKernels | null): Promise<CompareInput> {
	const header = await readHeader(filePath);
	const reader = await TensorReader.open(header);
	let model;
	try {
		model = await loadLoraModel(header, reader);
	} finally {
		await reader.close();
	}

	const stats = kernels ? (await statsOf(header, model, kernels)).stats : null;
	return {header, model, training: parseTraining(header.metadata), stats};
}

// ---------------------------------------------------------------- formatting

function formatNumber(value: number | null): string {
	if (value === null || !Number.isFinite(value)) {
		return value === null ? '–' : String(value);
	}

	if (value === 0) {
		return '0';
	}

	const magnitude = Math.abs(value);
	if (Number.isInteger(value) && magnitude < 1e5) {
		return String(value);
	}

	return magnitude >= 1e5 || magnitude < 1e-3 ? value.toExponential(3) : value.toPrecision(4);
}

function formatDelta(value: number | null): string {
	if (value === null) {
		return '–';
	}

	return `${value > 0 ? '+' : ''}${formatNumber(value)}`;
}

function formatPercent(value: number | null): string {
	if (value === null || !Number.isFinite(value)) {
		return '–';
	}

	return `${value > 0 ? '+' : ''}${(value * 100).toFixed(1)}%`;
}

/** Left-aligned first column, right-aligned others. Cells must already be sanitised. */
function table(rows: string[][]): string {
	const widths: number[] = [];
	for (const row of rows) {
		for (const [index, cell] of row.entries()) {
			widths[index] = Math.max(widths[index] ?? 0, [...cell].length);
		}
	}

	return rows.map(row => row.map((cell, index) => {
		const pad = (widths[index] ?? 0) - [...cell].length;
		return index === 0 ? cell + ' '.repeat(pad) : ' '.repeat(pad) + cell;
	}).join('  ').trimEnd()).join('\n');
}

function cell(text: string, width = 60): string {
	return sanitizeLine(text, width);
}

function valueText(value: unknown, width = 40): string {
	return cell(typeof value === 'string' ? value : JSON.stringify(value) ?? String(value), width);
}

function normRow(label: string, change: NormChange): string[] {
	return [label, formatNumber(change.a), formatNumber(change.b), formatDelta(change.delta), formatPercent(change.relative)];
}

export function formatComparison(comparison: Comparison, options: {all?: boolean} = {}): string {
	const limit = options.all ? Number.POSITIVE_INFINITY : 20;
	const lines: string[] = [];
	const [pathA, pathB] = comparison.paths;
	lines.push(`A  ${cell(pathA, 200)}`, `B  ${cell(pathB, 200)}`, '');

	const s = comparison.structure;
	lines.push(table([
		['', 'A', 'B'],
		['arch', s.arch[0], s.arch[1]],
		['network', s.networkType[0], s.networkType[1]],
		['key style', s.keyStyle[0], s.keyStyle[1]],
		['dtype', cell(s.dtype[0], 12), cell(s.dtype[1], 12)],
		['modules', String(s.modules[0]), String(s.modules[1])],
		['tensors', String(s.tensors[0]), String(s.tensors[1])],
		['rank', formatNumber(comparison.rankAlpha.rank[0]), formatNumber(comparison.rankAlpha.rank[1])],
		['alpha', formatNumber(comparison.rankAlpha.alpha[0]), formatNumber(comparison.rankAlpha.alpha[1])],
		['ss_network_dim', String(comparison.rankAlpha.metadataDim[0] ?? '–'), String(comparison.rankAlpha.metadataDim[1] ?? '–')],
		['ss_network_alpha', String(comparison.rankAlpha.metadataAlpha[0] ?? '–'), String(comparison.rankAlpha.metadataAlpha[1] ?? '–')],
	]), '');

	// Tensor data
	const t = comparison.tensors;
	if (t.identical === true) {
		lines.push('Tensor data: identical');
	} else if (t.identical === null) {
		lines.push('Tensor data: not compared (same layout)');
	} else if (t.sameLayout) {
		lines.push(`Tensor data: differs (${t.basis === 'bytes' ? `${t.differing.length} tensors differ` : 'data-area hashes differ'})`);
	} else {
		lines.push(`Tensor data: layout differs (${t.onlyInA.length} tensors only in A, ${t.onlyInB.length} only in B, ${t.reshaped.length} with another dtype or shape${t.basis === 'bytes' ? `, ${t.differing.length} shared tensors differ` : ''})`);
	}

	// Rank / alpha per module
	const ra = comparison.rankAlpha;
	if (ra.modules.length > 0 || ra.onlyInA.length > 0 || ra.onlyInB.length > 0) {
		lines.push(`Modules: ${ra.common} in both, ${ra.onlyInA.length} only in A, ${ra.onlyInB.length} only in B, ${ra.modules.length} with another rank or alpha`);
		const rows = [['module', 'rank A', 'rank B', 'alpha A', 'alpha B']];
		for (const change of ra.modules.slice(0, limit)) {
			rows.push([cell(change.module, 70), formatNumber(change.rankA), formatNumber(change.rankB), formatNumber(change.alphaA), formatNumber(change.alphaB)]);
		}

		if (rows.length > 1) {
			lines.push(table(rows));
		}

		if (ra.modules.length > limit) {
			lines.push(`… ${ra.modules.length - limit} more (--all)`);
		}
	}

	lines.push('');

	// Metadata
	const m = comparison.metadata;
	lines.push(`Metadata: ${m.added.length} added, ${m.removed.length} removed, ${m.changed.length} changed, ${m.unchanged} unchanged${m.formattingOnly.length > 0 ? ` (${m.formattingOnly.length} JSON fields differ only in formatting)` : ''}`);
	for (const change of m.added) {
		lines.push(`  + ${cell(change.key, 40)} = ${cell(change.b ?? '', 80)}`);
	}

	for (const change of m.removed) {
		lines.push(`  - ${cell(change.key, 40)} = ${cell(change.a ?? '', 80)}`);
	}

	for (const change of m.changed) {
		if (change.json) {
			lines.push(`  ~ ${cell(change.key, 40)}: ${change.json.length}${change.jsonTruncated ? '+' : ''} changes inside`);
			for (const inner of change.json.slice(0, change.key === 'ss_tag_frequency' ? 5 : limit)) {
				const at = cell(inner.path || '(value)', 50);
				if (inner.kind === 'added') {
					lines.push(`      + ${at} = ${valueText(inner.b)}`);
				} else if (inner.kind === 'removed') {
					lines.push(`      - ${at} = ${valueText(inner.a)}`);
				} else {
					lines.push(`      ~ ${at}: ${valueText(inner.a)} → ${valueText(inner.b)}`);
				}
			}

			continue;
		}

		lines.push(`  ~ ${cell(change.key, 40)}: ${cell(change.a ?? '', 50)} → ${cell(change.b ?? '', 50)}`);
	}

	// Tags
	if (comparison.tags) {
		const tags = comparison.tags;
		lines.push('', `Tags: ${tags.changes.length} counts changed (${tags.onlyInA} only in A, ${tags.onlyInB} only in B), ${tags.unchanged} unchanged`);
		if (tags.changes.length > 0) {
			const rows = [['dir / tag', 'A', 'B', 'Δ']];
			for (const change of tags.changes.slice(0, limit)) {
				rows.push([`${cell(change.dir, 30)} / ${cell(change.tag, 40)}`, String(change.a), String(change.b), formatDelta(change.delta)]);
			}

			lines.push(table(rows));
			if (tags.changes.length > limit) {
				lines.push(`… ${tags.changes.length - limit} more (--all)`);
			}
		}
	}

	// Norms
	if (comparison.blocks && comparison.totals) {
		lines.push('', 'Block norms ‖ΔW‖ (sqrt of the sum of squared module norms)');
		const rows = [['block', 'A', 'B', 'Δ', 'Δ%']];
		for (const block of comparison.blocks) {
			rows.push(normRow(cell(block.block, 16), block));
		}

		rows.push(normRow('UNet total', comparison.totals.unet), normRow('TE total', comparison.totals.te));
		lines.push(table(rows));
	}

	return `${lines.join('\n')}\n`;
}

export function formatEpochSeries(series: EpochSeries, options: {color?: boolean; width?: number} = {}): string {
	const lines: string[] = [];
	for (const warning of series.warnings) {
		lines.push(`warning: ${warning}`);
	}

	lines.push(table([
		['#', 'file', 'epoch', 'steps'],
		...series.points.map((point, index) => [String(index + 1), cell(point.name, 60), point.epoch === null ? '–' : String(point.epoch), point.steps === null ? '–' : String(point.steps)]),
	]), '');

	const header = ['block', ...series.points.map((point, index) => point.epoch === null ? `#${index + 1}` : `e${point.epoch}`)];
	const rows = [header];
	for (const block of series.blocks) {
		rows.push([cell(block.block, 16), ...block.values.map(v => formatNumber(v))]);
	}

	rows.push(['UNet total', ...series.unet.map(v => formatNumber(v))], ['TE total', ...series.te.map(v => formatNumber(v))]);
	lines.push(table(rows));

	if (series.points.length >= 2) {
		// asciichart draws one column per point: stretch short series so the chart is readable.
		const width = Math.max(series.points.length, Math.min(options.width ?? 60, 60));
		const stretch = (values: number[]): number[] => Array.from({length: width}, (_, x) => {
			const position = (x * (values.length - 1)) / (width - 1);
			const left = Math.floor(position);
			const right = Math.min(values.length - 1, left + 1);
			const fraction = position - left;
			return (values[left]! * (1 - fraction)) + (values[right]! * fraction);
		});
		// One chart per total: two lines in one chart cannot be told apart without colour.
		const charts: Array<[string, number[], string]> = [['UNet', series.unet, asciichart.blue]];
		if (series.te.some(v => v > 0)) {
			charts.push(['TE', series.te, asciichart.green]);
		}

		for (const [label, values, color] of charts) {
			lines.push('', `${label} ‖ΔW‖ across epochs (${series.points.length} files, left to right)`);
			lines.push(asciichart.plot(stretch(values), {
				height: 6,
				colors: options.color ? [color] : undefined,
				format: (x: number) => formatNumber(x).padStart(10),
			}));
		}
	}

	return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------- command

export async function run(argv: string[]): Promise<number> {
	let flags: Flags;
	let files: string[];
	try {
		const parsed = parseArgs({
			args: argv,
			allowPositionals: true,
			strict: true,
			options: {
				json: {type: 'boolean'},
				epochs: {type: 'boolean'},
				'no-stats': {type: 'boolean'},
				all: {type: 'boolean'},
				help: {type: 'boolean', short: 'h'},
			},
		});
		flags = parsed.values;
		files = parsed.positionals;
		if (flags.help) {
			process.stdout.write(usage);
			return 0;
		}

		if (flags.epochs ? files.length < 2 : files.length !== 2) {
			throw new UsageError(flags.epochs ? '--epochs needs at least two files' : 'compare takes two files (or several with --epochs)');
		}

		if (flags.epochs && flags['no-stats']) {
			throw new UsageError('--epochs needs the norms; drop --no-stats');
		}
	} catch (error) {
		process.stderr.write(`lorascope compare: ${error instanceof UsageError ? error.message : errorReason(error)}\n\n${usage}`);
		return 2;
	}

	const inputs: CompareInput[] = [];
	let failed = false;
	// Two SDXL files took 10 s with plain-JS Grams; onnxruntime and a helper thread take ~1 s.
	const choice = flags['no-stats'] ? null : await chooseStatsKernels(files);
	try {
		for (const file of files) {
			try {
				inputs.push(await loadCompareInput(file, choice?.kernels ?? null));
			} catch (error) {
				process.stderr.write(`lorascope compare: ${sanitizeLine(path.basename(file), 120)}: ${sanitizeLine(reasonOf(error), 300)}\n`);
				failed = true;
			}
		}
	} finally {
		await choice?.dispose();
	}

	if (failed) {
		return 1;
	}

	if (flags.epochs) {
		const series = epochSeries(inputs.map(input => ({header: input.header, training: input.training, stats: input.stats!})));
		process.stdout.write(flags.json ? `${jsonForTerminal(series, 2)}\n` : formatEpochSeries(series, {color: process.stdout.isTTY, width: (process.stdout.columns ?? 80) - 14}));
		return 0;
	}

	const [a, b] = inputs as [CompareInput, CompareInput];
	let tensorData;
	try {
		tensorData = await compareTensorData(a.header, b.header);
	} catch (error) {
		process.stderr.write(`lorascope compare: ${sanitizeLine(reasonOf(error), 300)}\n`);
		return 1;
	}

	const comparison = compareFiles(a, b, {tensorData});
	process.stdout.write(flags.json ? `${jsonForTerminal(comparison, 2)}\n` : formatComparison(comparison, {all: flags.all}));
	return 0;
}

function reasonOf(error: unknown): string {
	const reason = (error as {reason?: unknown} | null)?.reason;
	return typeof reason === 'string' ? reason : errorReason(error);
}
