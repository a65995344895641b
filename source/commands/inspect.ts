// `lorascope inspect <file-or-dir>... [-w] [-t] [-d] [-s] [--json] [--hash]`: the headless view of
// LoRA files, with lora-inspector's flags (weights, tags, dataset, save meta). Folders are scanned
// recursively. Everything that comes from a file is sanitised before it reaches the terminal.
// Exit codes: 0 every file was read, 1 some file failed (the others are still reported), 2 usage.
import {mkdir} from 'node:fs/promises';
import path from 'node:path';
import process from 'node:process';
import {parseArgs} from 'node:util';
import {loadEntry, type LoraEntry} from '../lora/entry.js';
import {findTrainingIssues, type Finding} from '../lora/findings.js';
import type {FileHashes} from '../lora/hashes.js';
import {formatArch, formatKeyStyle} from '../lora/model.js';
import {pyFloat} from '../lora/sample-metadata.js';
import {displayWidth, sanitizeLine} from '../lora/sanitize.js';
import {expandCommandPaths} from '../lora/scan.js';
import {errorReason} from '../lora/safetensors.js';
import {presentTrainingGroups} from '../lora/training-fields.js';
import type {GramKernels, LoraStats} from '../lora/types.js';
import {writeFileAtomic} from '../lora/writer.js';
import {jsonForTerminal} from './meta.js';
import {chooseStatsKernels, statsOf} from './stats-kernels.js';

export const usage = `Usage: lorascope inspect <file-or-dir>... [options]

Show what a LoRA file says about itself: format, architecture, rank/alpha, training metadata.
Folders are scanned recursively for .safetensors (pickle files are listed, never unpickled).

Options:
  -w, --weights     weight statistics: lora-inspector's average magnitude/strength per
                    UNet / UNet conv / TE / TE2, and ‖ΔW‖ per module and block
  -t, --tags        most common caption tags (ss_tag_frequency)
  -d, --dataset     dataset folders with image counts and repeats
  -s, --save-meta   write raw and parsed metadata to meta/<name>.json
      --json        one JSON array on stdout, one object per file
      --hash        sha256, AutoV2 and whether the stored sshs_* hashes still match
  -h, --help        this text

Exit status: 0 all files read, 1 some file could not be read, 2 usage error.
`;

export type InspectFlags = {weights: boolean; tags: boolean; dataset: boolean; saveMeta: boolean; json: boolean; hash: boolean};

export type ParsedArgs = {kind: 'ok'; flags: InspectFlags; paths: string[]} | {kind: 'help'} | {kind: 'error'; message: string};

export function parseInspectArgs(argv: string[]): ParsedArgs {
	let parsed;
	try {
		parsed = parseArgs({
			args: argv,
			allowPositionals: true,
			strict: true,
			options: {
				weights: {type: 'boolean', short: 'w'},
				tags: {type: 'boolean', short: 't'},
				dataset: {type: 'boolean', short: 'd'},
				'save-meta': {type: 'boolean', short: 's'},
				// lora-inspector's spelling.
				save_meta: {type: 'boolean'},
				json: {type: 'boolean'},
				hash: {type: 'boolean'},
				help: {type: 'boolean', short: 'h'},
			},
		});
	} catch (error) {
		return {kind: 'error', message: errorReason(error)};
	}

	const {values, positionals} = parsed;
	if (values.help) {
		return {kind: 'help'};
	}

	if (positionals.length === 0) {
		return {kind: 'error', message: 'no file or folder given'};
	}

	return {
		kind: 'ok',
		paths: positionals,
		flags: {
			weights: values.weights ?? false,
			tags: values.tags ?? false,
			dataset: values.dataset ?? false,
			saveMeta: (values['save-meta'] ?? false) || (values.save_meta ?? false),
			json: values.json ?? false,
			hash: values.hash ?? false,
		},
	};
}

/** Where output goes; tests pass collectors, the CLI the process streams. */
export type InspectIO = {
	stdout: (text: string) => void;
	stderr: (text: string) => void;
	/** Folder meta/ is written under (-s). */
	cwd: string;
	/** Terminal width for the text view. */
	columns: number;
	/** Gram kernels for -w; default: onnxruntime for large inputs, else plain JS. */
	kernels?: GramKernels;
};

type Inspected = {
	path: string;
	entry: LoraEntry;
	error: string | null;
	stats?: LoraStats;
	findings: Finding[];
	hashes?: FileHashes;
	savedMeta?: string;
};


async function inspectOne(item: {path: string; error?: string}, flags: InspectFlags, kernels: () => Promise<GramKernels>): Promise<Inspected> {
	if (item.error !== undefined) {
		return {path: item.path, entry: {path: item.path, sizeBytes: 0, mtimeMs: 0, error: item.error}, error: item.error, findings: []};
	}

	// With -w the statistics pass reads the alpha tensors anyway; without, read just those.
	const entry = await loadEntry(item.path, {alphas: !flags.weights});
	const result: Inspected = {path: item.path, entry, error: entry.error, findings: []};
	if (entry.error !== null || !entry.header || !entry.model || !entry.training) {
		return result;
	}

	if (flags.weights) {
		try {
			const {stats, model} = await statsOf(entry.header, entry.model, await kernels());
			result.stats = stats;
			entry.model = model;
			entry.alphasLoaded = true;
		} catch (error) {
			result.error = oneLine(errorReason(error));
		}
	}

	if (flags.hash) {
		try {
			const {computeFileHashes} = await import('../lora/hashes.js');
			result.hashes = await computeFileHashes(item.path);
		} catch (error) {
			result.error ??= oneLine(errorReason(error));
		}
	}

	result.findings = findTrainingIssues({training: entry.training, model: entry.model, stats: result.stats ?? null});
	return result;
}

function oneLine(text: string): string {
	return (text.split(/\r?\n/, 1)[0] ?? '').slice(0, 300);
}

// ---------------------------------------------------------------- JSON

function componentCounts(entry: LoraEntry): Record<string, number> {
	const counts: Record<string, number> = {};
	for (const module of entry.model?.modules ?? []) {
		counts[module.component] = (counts[module.component] ?? 0) + 1;
	}

	return counts;
}

function toJson(item: Inspected, flags: InspectFlags): Record<string, unknown> {
	const {entry} = item;
	const model = entry.model;
	const training = entry.training;
	const object: Record<string, unknown> = {
		path: item.path,
		sizeBytes: entry.sizeBytes,
		mtimeMs: entry.mtimeMs,
		error: item.error,
		keyStyle: model?.keyStyle ?? null,
		networkType: model?.networkType ?? null,
		arch: model?.arch ?? null,
		archEvidence: model?.archEvidence ?? null,
		rank: model?.rank ?? null,
		alpha: model?.alpha ?? null,
		dtype: model?.dtype ?? null,
		moduleCount: model?.modules.length ?? null,
		components: model ? componentCounts(entry) : null,
		warnings: model?.warnings ?? [],
		metadata: entry.header?.metadata ?? null,
		training: training ?? null,
		tags: training?.tags ?? [],
		dataset: training?.dataset.map(d => ({dir: d.dir, repeats: d.repeats, images: d.images, isReg: d.isReg})) ?? [],
		findings: item.findings,
	};
	if (flags.weights) {
		const stats = item.stats;
		const bucket = (b: LoraStats['buckets']['unet'] | undefined) => (b ? {magnitude: b.magnitude, strength: b.strength, tensors: b.tensors} : null);
		object['weights'] = stats ? {unet: bucket(stats.buckets.unet), unetConv: bucket(stats.buckets.unetConv), te: bucket(stats.buckets.te), te2: bucket(stats.buckets.te2)} : null;
		object['modules'] = stats?.modules.map(m => ({name: m.name, block: m.block, component: m.component, rank: m.rank, alpha: m.alpha, norm: m.norm, nonFinite: m.nonFinite})) ?? null;
		object['blocks'] = stats?.blocks.map(b => ({name: b.name, modules: b.modules, norm: b.norm, mean: b.mean})) ?? null;
		object['unetNorm'] = stats?.unetNorm ?? null;
		object['teNorm'] = stats?.teNorm ?? null;
		object['nonFiniteValues'] = stats?.nonFiniteValues ?? null;
		object['zeroModules'] = stats?.zeroModules ?? null;
	}

	if (flags.hash) {
		object['hashes'] = item.hashes
			? {
				sha256: item.hashes.sha256,
				autov2: item.hashes.autov2,
				dataSha256: item.hashes.dataSha256,
				legacyHash: item.hashes.legacyHash,
				storedModelHash: item.hashes.storedModelHash,
				storedLegacyHash: item.hashes.storedLegacyHash,
				modelHashStatus: item.hashes.modelHashStatus,
				legacyHashStatus: item.hashes.legacyHashStatus,
			}
			: null;
	}

	if (item.savedMeta) {
		object['savedMeta'] = item.savedMeta;
	}

	return object;
}

// ---------------------------------------------------------------- text

function formatBytes(bytes: number): string {
	if (bytes >= 1024 * 1024 * 1024) {
		return `${(bytes / (1024 * 1024 * 1024)).toFixed(2)} GiB`;
	}

	if (bytes >= 1024 * 1024) {
		return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
	}

	return bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} B`;
}

function short(value: number): string {
	if (value === 0) {
		return '0';
	}

	return Math.abs(value) >= 1e-3 && Math.abs(value) < 1e5 ? String(Number(value.toPrecision(4))) : value.toExponential(3);
}

/** Join parts with ' · ' into lines no wider than `width`, each starting with `indent`. */
function wrapParts(parts: string[], indent: string, width: number): string[] {
	const lines: string[] = [];
	let line = '';
	for (const part of parts) {
		if (line === '') {
			line = indent + part;
		} else if (line.length + 3 + part.length <= width) {
			line += ` · ${part}`;
		} else {
			lines.push(line);
			line = indent + part;
		}
	}

	if (line !== '') {
		lines.push(line);
	}

	return lines;
}

const componentNames: Record<string, string> = {unet: 'UNet', te: 'TE', te1: 'TE1', te2: 'TE2', te3: 'T5'};

function formatText(item: Inspected, flags: InspectFlags, width: number): string {
	const lines: string[] = [sanitizeLine(item.path, 400)];
	const {entry} = item;
	const model = entry.model;
	const training = entry.training;
	if (!model || !training) {
		lines.push(`  error: ${sanitizeLine(item.error ?? 'unreadable', 300)}`);
		return `${lines.join('\n')}\n----------------------\n`;
	}

	const counts = Object.entries(componentCounts(entry)).map(([c, n]) => `${componentNames[c] ?? c} ${n}`).join(', ');
	const scale = model.rank !== null && model.alpha !== null && model.rank > 0 ? ` (scale ${short(model.alpha / model.rank)})` : '';
	lines.push(...wrapParts([
		`${formatKeyStyle(model.keyStyle)} ${model.networkType}`,
		`${formatArch(model.arch)}${model.arch === 'unknown' ? '' : ` (${sanitizeLine(model.archEvidence, 60)})`}`,
		`${model.modules.length} modules${counts ? ` (${counts})` : ''}`,
		`rank ${model.rank ?? '?'}`,
		`alpha ${model.alpha === null ? '?' : short(model.alpha)}${scale}`,
		model.dtype,
		formatBytes(entry.sizeBytes),
	], '  ', width));
	for (const warning of model.warnings.slice(0, 8)) {
		lines.push(`  warning: ${sanitizeLine(warning, Math.max(40, width - 11))}`);
	}

	if (item.error) {
		lines.push(`  error: ${sanitizeLine(item.error, 300)}`);
	}

	if (!training.hasTrainingMetadata && Object.keys(entry.header?.metadata ?? {}).length === 0) {
		lines.push('  (no metadata)');
	}

	for (const group of presentTrainingGroups(training)) {
		const label = `  ${group.title}:`.padEnd(16);
		const parts = group.rows.map(row => `${row.field.label} ${sanitizeLine(row.value, Math.max(20, width - 20))}`);
		const wrapped = wrapParts(parts, ' '.repeat(16), width);
		if (wrapped.length > 0) {
			wrapped[0] = label + wrapped[0]!.slice(16);
		}

		lines.push(...wrapped);
	}

	for (const finding of item.findings) {
		lines.push(`  ${finding.severity === 'warning' ? 'warning' : 'note'}: ${sanitizeLine(finding.title, 120)}`);
		lines.push(...wrapParts([sanitizeLine(finding.reason, 600)], '      ', width));
	}

	if (flags.weights && item.stats) {
		lines.push(...formatWeights(item.stats, width));
	}

	if (flags.tags) {
		lines.push(...formatTags(training.tags, width));
	}

	if (flags.dataset) {
		const dirs = training.dataset.filter(d => !d.isReg);
		lines.push(`  Dataset dirs: ${dirs.length}`);
		for (const d of training.dataset) {
			const repeats = d.repeats === null ? '' : ` × ${d.repeats} repeats`;
			lines.push(`    [${sanitizeLine(d.dir, 80)}] ${d.images ?? '?'} images${repeats}${d.isReg ? ' (regularisation)' : ''}`);
		}
	}

	if (flags.hash && item.hashes) {
		const h = item.hashes;
		lines.push(`  sha256 ${h.sha256} · AutoV2 ${h.autov2}`);
		lines.push(`  sshs_model_hash: ${h.modelHashStatus} · sshs_legacy_hash: ${h.legacyHashStatus}`);
	}

	if (item.savedMeta) {
		lines.push(`  Saved metadata to ${sanitizeLine(item.savedMeta, 200)}`);
	}

	return `${lines.join('\n')}\n----------------------\n`;
}

function formatWeights(stats: LoraStats, width: number): string[] {
	const lines: string[] = [];
	const buckets: Array<[string, LoraStats['buckets']['unet']]> = [
		['UNet', stats.buckets.unet],
		['UNet Conv', stats.buckets.unetConv],
		['Text Encoder (1)', stats.buckets.te],
		['Text Encoder (2)', stats.buckets.te2],
	];
	// lora-inspector's wording and full-precision figures, so they can be compared digit for digit.
	for (const [name, bucket] of buckets) {
		if (bucket) {
			lines.push(`  ${name} weight average magnitude: ${pyFloat(bucket.magnitude)}`);
			lines.push(`  ${name} weight average strength: ${pyFloat(bucket.strength)}`);
		}
	}

	if (!stats.buckets.unet && !stats.buckets.unetConv) {
		lines.push('  No UNet found in this LoRA (lora-inspector counts only kohya `.weight` tensors)');
	}

	lines.push(`  ‖ΔW‖ total: UNet ${short(stats.unetNorm)} · TE ${short(stats.teNorm)} · zero-update modules ${stats.zeroModules.length} · NaN/Inf values ${stats.nonFiniteValues}`);
	const unknown = stats.modules.filter(m => m.norm === null).length;
	if (unknown > 0) {
		lines.push(`  ${unknown} modules need the base weights for ‖ΔW‖ (DoRA, IA3, OFT, GLoRA) or have unreadable shapes`);
	}

	if (stats.blocks.length > 0) {
		lines.push('  Blocks: ‖ΔW‖ = √Σ‖ΔW_module‖² (modules, mean per module)');
		const max = Math.max(...stats.blocks.map(b => b.norm));
		const barWidth = Math.max(10, Math.min(40, width - 44));
		for (const block of stats.blocks) {
			const bar = '█'.repeat(max > 0 ? Math.round(barWidth * block.norm / max) : 0);
			lines.push(`    ${sanitizeLine(block.name, 8).padEnd(8)} ${short(block.norm).padStart(10)} ${String(block.modules).padStart(4)} ${short(block.mean).padStart(10)}  ${bar}`);
		}
	}

	return lines;
}

function formatTags(tags: ReadonlyArray<{dir: string; tag: string; count: number}>, width: number): string[] {
	if (tags.length === 0) {
		return ['  No tags found'];
	}

	// lora-inspector: every (dir, tag) pair, most frequent first, 21 rows then "N more tags...".
	const shown = tags.slice(0, 21);
	const names = shown.map(t => sanitizeLine(t.tag, Math.min(60, Math.max(20, width - 20))));
	const column = Math.min(61, Math.max(...names.map(n => displayWidth(n))) + 1);
	const lines = ['  Tags'];
	for (const [index, tag] of shown.entries()) {
		const name = names[index]!;
		lines.push(`    ${name}${' '.repeat(Math.max(1, column - displayWidth(name)))}${tag.count}`);
	}

	if (tags.length > shown.length) {
		lines.push(`    ${tags.length - shown.length} more tags...`);
	}

	return lines;
}

// ---------------------------------------------------------------- save meta

async function saveMeta(item: Inspected, cwd: string, used: Set<string>): Promise<string> {
	const folder = path.join(cwd, 'meta');
	await mkdir(folder, {recursive: true});
	const stem = path.basename(item.path).replace(/\.[^.]*$/, '') || 'lora';
	// Stems are file names, so keep them inside meta/ and distinct within one run.
	const safeStem = stem.replaceAll(/[^\w.\- ()[\]+,@]/g, '_').slice(0, 200);
	let name = `${safeStem}.json`;
	for (let n = 2; used.has(name); n++) {
		name = `${safeStem}-${n}.json`;
	}

	used.add(name);
	const target = path.join(folder, name);
	const document = {
		file: item.path,
		filename: path.basename(item.path),
		metadata: item.entry.header?.metadata ?? {},
		training: item.entry.training ?? null,
	};
	await writeFileAtomic(target, [Buffer.from(`${JSON.stringify(document, null, 2)}\n`, 'utf8')], {overwrite: true});
	return path.relative(cwd, target) || target;
}

// ---------------------------------------------------------------- command

export async function runInspect(argv: string[], io: InspectIO): Promise<number> {
	const parsed = parseInspectArgs(argv);
	if (parsed.kind === 'help') {
		io.stdout(usage);
		return 0;
	}

	if (parsed.kind === 'error') {
		io.stderr(`lorascope inspect: ${sanitizeLine(parsed.message, 200)}\n\n${usage}`);
		return 2;
	}

	const {flags} = parsed;
	const items = await expandCommandPaths(parsed.paths);
	if (items.length === 0) {
		io.stderr('lorascope inspect: no .safetensors files found\n');
	}

	let kernelChoice: Promise<{kernels: GramKernels; dispose: () => Promise<void>}> | undefined;
	const kernels = async (): Promise<GramKernels> => {
		if (io.kernels) {
			return io.kernels;
		}

		kernelChoice ??= chooseStatsKernels(items.map(item => item.path));
		return (await kernelChoice).kernels;
	};

	// --json streams the array one file at a time (the same text JSON.stringify of the whole array
	// gives): keeping every result until the end held a 1,000,000-entry model and 10 MB metadata
	// values at once, 1.4 GB on the hostile corpus.
	let jsonItems = 0;
	const usedNames = new Set<string>();
	let failed = false;
	try {
		for (const item of items) {
			const result = await inspectOne(item, flags, kernels);
			if (flags.saveMeta && result.entry.header) {
				try {
					result.savedMeta = await saveMeta(result, io.cwd, usedNames);
				} catch (error) {
					io.stderr(`lorascope inspect: cannot save metadata of ${sanitizeLine(item.path, 200)}: ${sanitizeLine(errorReason(error), 200)}\n`);
					failed = true;
				}
			}

			failed ||= result.error !== null;
			if (flags.json) {
				const element = jsonForTerminal(toJson(result, flags), 2).replaceAll('\n', '\n  ');
				io.stdout(`${jsonItems === 0 ? '[\n  ' : ',\n  '}${element}`);
				jsonItems++;
			} else {
				io.stdout(formatText(result, flags, io.columns));
			}
		}
	} finally {
		// Closed even if something threw, so stdout stays one valid JSON array.
		if (flags.json) {
			io.stdout(jsonItems === 0 ? '[]\n' : '\n]\n');
		}

		if (kernelChoice) {
			await (await kernelChoice).dispose();
		}
	}

	return failed ? 1 : 0;
}

export async function run(argv: string[]): Promise<number> {
	return runInspect(argv, {
		stdout: text => process.stdout.write(text),
		stderr: text => process.stderr.write(text),
		cwd: process.cwd(),
		columns: process.stdout.columns && process.stdout.columns > 40 ? process.stdout.columns : 100,
	});
}
