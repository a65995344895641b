// Comparing LoRA files: two files side by side (metadata, tags, block norms, rank/alpha, tensor
// data) and the epochs of one training run as a series. Everything except compareTensorData is a
// pure function of already-loaded data, so the CLI and the dashboard's compare view share it.
import {TensorReader} from './safetensors.js';
import type {TrainingInfo} from './metadata.js';
import {replacePythonNonFinite} from './sanitize.js';
import type {BlockNorm, LoraModel, LoraStats, SafetensorsHeader} from './types.js';

/** One file as compare needs it. `stats` is null when norms were not computed. */
export type CompareInput = {
	header: SafetensorsHeader;
	model: LoraModel;
	training: TrainingInfo;
	stats: LoraStats | null;
	/** sha256 of the data area (from the hash job), when known. */
	dataSha256?: string | null;
};

/** One difference inside a JSON-valued metadata field; `path` is a dotted path (`dir.tag`, `[2].a`). */
export type JsonChange = {
	path: string;
	kind: 'added' | 'removed' | 'changed';
	a?: unknown;
	b?: unknown;
};

export type MetadataChange = {
	key: string;
	kind: 'added' | 'removed' | 'changed';
	/** Raw value in A (null when added). */
	a: string | null;
	/** Raw value in B (null when removed). */
	b: string | null;
	/** For JSON-valued fields changed in both: what changed inside, capped at maxJsonChanges. */
	json?: JsonChange[];
	/** More JSON changes existed than listed. */
	jsonTruncated?: boolean;
};

export type MetadataDiff = {
	added: MetadataChange[];
	removed: MetadataChange[];
	changed: MetadataChange[];
	/** Keys equal in both (JSON fields that differ only in formatting count as equal). */
	unchanged: number;
	/** JSON-valued keys whose text differs but whose content is the same. */
	formattingOnly: string[];
};

/** A tag whose count differs (0 where the tag is absent). */
export type TagChange = {dir: string; tag: string; a: number; b: number; delta: number};

export type TagDiff = {
	/** Per (dir, tag), largest |delta| first. */
	changes: TagChange[];
	/** Per tag summed over dirs, largest |delta| first. */
	merged: Array<{tag: string; a: number; b: number; delta: number}>;
	onlyInA: number;
	onlyInB: number;
	unchanged: number;
};

/** A norm in A and B with its change; relative = delta / a (null when a is 0 or missing). */
export type NormChange = {a: number | null; b: number | null; delta: number | null; relative: number | null};

export type BlockChange = NormChange & {block: string; blockOrder: number; modulesA: number; modulesB: number};

export type ModuleRankChange = {
	module: string;
	block: string;
	rankA: number | null;
	rankB: number | null;
	alphaA: number | null;
	alphaB: number | null;
};

export type RankAlphaDiff = {
	/** Most common rank / alpha of each file. */
	rank: [number | null, number | null];
	alpha: [number | null, number | null];
	/** Metadata's ss_network_dim / ss_network_alpha. */
	metadataDim: [number | 'Dynamic' | null, number | 'Dynamic' | null];
	metadataAlpha: [number | 'Dynamic' | null, number | 'Dynamic' | null];
	/** Modules present in both whose rank or alpha differs. */
	modules: ModuleRankChange[];
	onlyInA: string[];
	onlyInB: string[];
	/** Modules present in both. */
	common: number;
};

export type TensorDataComparison = {
	/** True when every tensor has the same name, dtype, shape and bytes. Null when not known. */
	identical: boolean | null;
	/** How `identical` was decided. */
	basis: 'bytes' | 'data-sha256' | 'layout' | 'unknown';
	/** Same tensor names, dtypes and shapes. */
	sameLayout: boolean;
	/** Tensors present in both with the same dtype and shape but different bytes (when compared by bytes). */
	differing: string[];
	/** Tensors present in both whose dtype or shape differs. */
	reshaped: string[];
	onlyInA: string[];
	onlyInB: string[];
};

export type Comparison = {
	paths: [string, string];
	metadata: MetadataDiff;
	/** Null when neither file has a tag histogram. */
	tags: TagDiff | null;
	/** Per-block norm changes in architecture order; null unless both stats are given. */
	blocks: BlockChange[] | null;
	/** UNet / text-encoder totals; null unless both stats are given. */
	totals: {unet: NormChange; te: NormChange} | null;
	rankAlpha: RankAlphaDiff;
	tensors: TensorDataComparison;
	structure: {
		arch: [string, string];
		networkType: [string, string];
		keyStyle: [string, string];
		dtype: [string, string];
		modules: [number, number];
		tensors: [number, number];
	};
};

export const maxJsonChanges = 200;

// ---------------------------------------------------------------- JSON content

/** Parse a metadata value that holds a JSON object or array; undefined for anything else. */
function parseJsonValue(raw: string): unknown {
	const first = raw.trimStart()[0];
	if (first !== '{' && first !== '[') {
		return undefined;
	}

	try {
		return JSON.parse(raw) as unknown;
	} catch {
		try {
			return JSON.parse(replacePythonNonFinite(raw)) as unknown;
		} catch {
			return undefined;
		}
	}
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
	return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function joinPath(base: string, key: string | number): string {
	if (typeof key === 'number') {
		return `${base}[${key}]`;
	}

	return base === '' ? key : `${base}.${key}`;
}

/**
 * Differences between two parsed JSON values, depth first, at most `limit` entries (plus one to
 * tell that the list was cut). Objects compare by key regardless of key order.
 */
export function diffJson(a: unknown, b: unknown, limit = maxJsonChanges): JsonChange[] {
	const changes: JsonChange[] = [];
	// Explicit stack: metadata JSON is untrusted and may nest deeply.
	const stack: Array<[unknown, unknown, string]> = [[a, b, '']];
	while (stack.length > 0 && changes.length <= limit) {
		const [x, y, path] = stack.pop()!;
		if (isPlainObject(x) && isPlainObject(y)) {
			const keys = [...new Set([...Object.keys(x), ...Object.keys(y)])];
			for (const key of keys.reverse()) {
				const inX = Object.hasOwn(x, key);
				const inY = Object.hasOwn(y, key);
				if (inX && inY) {
					stack.push([x[key], y[key], joinPath(path, key)]);
				} else if (inX) {
					changes.push({path: joinPath(path, key), kind: 'removed', a: x[key]});
				} else {
					changes.push({path: joinPath(path, key), kind: 'added', b: y[key]});
				}
			}

			continue;
		}

		if (Array.isArray(x) && Array.isArray(y)) {
			const length = Math.max(x.length, y.length);
			for (let index = length - 1; index >= 0; index--) {
				if (index >= y.length) {
					changes.push({path: joinPath(path, index), kind: 'removed', a: x[index]});
				} else if (index >= x.length) {
					changes.push({path: joinPath(path, index), kind: 'added', b: y[index]});
				} else {
					stack.push([x[index], y[index], joinPath(path, index)]);
				}
			}

			continue;
		}

		if (!Object.is(x, y) && !(typeof x === 'number' && x === y)) {
			changes.push({path, kind: 'changed', a: x, b: y});
		}
	}

	return changes.sort((p, q) => (p.path < q.path ? -1 : (p.path > q.path ? 1 : 0)));
}

// ---------------------------------------------------------------- metadata

export function diffMetadata(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): MetadataDiff {
	const diff: MetadataDiff = {added: [], removed: [], changed: [], unchanged: 0, formattingOnly: []};
	const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
	for (const key of keys) {
		const x = Object.hasOwn(a, key) ? a[key]! : null;
		const y = Object.hasOwn(b, key) ? b[key]! : null;
		if (x === null && y !== null) {
			diff.added.push({key, kind: 'added', a: null, b: y});
		} else if (y === null && x !== null) {
			diff.removed.push({key, kind: 'removed', a: x, b: null});
		} else if (x === y) {
			diff.unchanged++;
		} else if (x !== null && y !== null) {
			const parsedX = parseJsonValue(x);
			const parsedY = parseJsonValue(y);
			if (parsedX !== undefined && parsedY !== undefined) {
				const changes = diffJson(parsedX, parsedY);
				if (changes.length === 0) {
					diff.unchanged++;
					diff.formattingOnly.push(key);
					continue;
				}

				const truncated = changes.length > maxJsonChanges;
				diff.changed.push({key, kind: 'changed', a: x, b: y, json: changes.slice(0, maxJsonChanges), ...(truncated ? {jsonTruncated: true} : {})});
				continue;
			}

			diff.changed.push({key, kind: 'changed', a: x, b: y});
		}
	}

	return diff;
}

// ---------------------------------------------------------------- tags

export function diffTags(a: TrainingInfo, b: TrainingInfo): TagDiff | null {
	if (a.tags.length === 0 && b.tags.length === 0) {
		return null;
	}

	const key = (dir: string, tag: string): string => `${dir}\0${tag}`;
	const counts = new Map<string, {dir: string; tag: string; a: number; b: number}>();
	for (const [side, info] of [['a', a], ['b', b]] as const) {
		for (const {dir, tag, count} of info.tags) {
			const entry = counts.get(key(dir, tag)) ?? {dir, tag, a: 0, b: 0};
			entry[side] += count;
			counts.set(key(dir, tag), entry);
		}
	}

	const changes: TagChange[] = [];
	const merged = new Map<string, {tag: string; a: number; b: number; delta: number}>();
	let onlyInA = 0;
	let onlyInB = 0;
	let unchanged = 0;
	for (const entry of counts.values()) {
		const total = merged.get(entry.tag) ?? {tag: entry.tag, a: 0, b: 0, delta: 0};
		total.a += entry.a;
		total.b += entry.b;
		total.delta = total.b - total.a;
		merged.set(entry.tag, total);
		if (entry.a === entry.b) {
			unchanged++;
			continue;
		}

		if (entry.b === 0) {
			onlyInA++;
		} else if (entry.a === 0) {
			onlyInB++;
		}

		changes.push({...entry, delta: entry.b - entry.a});
	}

	const byDelta = <T extends {delta: number; tag: string}>(p: T, q: T): number =>
		Math.abs(q.delta) - Math.abs(p.delta) || (p.tag < q.tag ? -1 : (p.tag > q.tag ? 1 : 0));
	return {
		changes: changes.sort(byDelta),
		merged: [...merged.values()].filter(entry => entry.delta !== 0).sort(byDelta),
		onlyInA,
		onlyInB,
		unchanged,
	};
}

// ---------------------------------------------------------------- norms

export function normChange(a: number | null | undefined, b: number | null | undefined): NormChange {
	const x = a ?? null;
	const y = b ?? null;
	const delta = x === null || y === null ? null : y - x;
	const relative = delta === null || x === null || x === 0 ? null : delta / x;
	return {a: x, b: y, delta, relative};
}

export function diffBlocks(a: readonly BlockNorm[], b: readonly BlockNorm[]): BlockChange[] {
	const byName = new Map<string, {order: number; a?: BlockNorm; b?: BlockNorm}>();
	for (const block of a) {
		byName.set(block.name, {order: block.blockOrder, a: block});
	}

	for (const block of b) {
		const entry = byName.get(block.name) ?? {order: block.blockOrder};
		entry.b = block;
		byName.set(block.name, entry);
	}

	return [...byName.entries()]
		.map(([name, entry]) => ({
			block: name,
			blockOrder: entry.order,
			modulesA: entry.a?.modules ?? 0,
			modulesB: entry.b?.modules ?? 0,
			...normChange(entry.a?.norm, entry.b?.norm),
		}))
		.sort((p, q) => p.blockOrder - q.blockOrder || (p.block < q.block ? -1 : 1));
}

// ---------------------------------------------------------------- rank / alpha

export function diffRankAlpha(a: CompareInput, b: CompareInput): RankAlphaDiff {
	const modulesB = new Map(b.model.modules.map(m => [m.name, m]));
	const namesA = new Set(a.model.modules.map(m => m.name));
	const modules: ModuleRankChange[] = [];
	let common = 0;
	for (const module of a.model.modules) {
		const other = modulesB.get(module.name);
		if (!other) {
			continue;
		}

		common++;
		if (module.rank !== other.rank || module.alpha !== other.alpha) {
			modules.push({module: module.name, block: module.block, rankA: module.rank, rankB: other.rank, alphaA: module.alpha, alphaB: other.alpha});
		}
	}

	return {
		rank: [a.model.rank, b.model.rank],
		alpha: [a.model.alpha, b.model.alpha],
		metadataDim: [a.training.networkDim, b.training.networkDim],
		metadataAlpha: [a.training.networkAlpha, b.training.networkAlpha],
		modules,
		onlyInA: a.model.modules.filter(m => !modulesB.has(m.name)).map(m => m.name),
		onlyInB: b.model.modules.filter(m => !namesA.has(m.name)).map(m => m.name),
		common,
	};
}

// ---------------------------------------------------------------- tensor data

type Layout = {sameLayout: boolean; reshaped: string[]; onlyInA: string[]; onlyInB: string[]};

function compareLayout(a: SafetensorsHeader, b: SafetensorsHeader): Layout {
	const reshaped: string[] = [];
	const onlyInA: string[] = [];
	for (const tensor of a.tensors) {
		const other = b.byName.get(tensor.name);
		if (!other) {
			onlyInA.push(tensor.name);
		} else if (other.dtype !== tensor.dtype || other.shape.length !== tensor.shape.length || other.shape.some((d, i) => d !== tensor.shape[i])) {
			reshaped.push(tensor.name);
		}
	}

	const onlyInB = b.tensors.filter(t => !a.byName.has(t.name)).map(t => t.name);
	return {sameLayout: reshaped.length === 0 && onlyInA.length === 0 && onlyInB.length === 0, reshaped, onlyInA, onlyInB};
}

/** What can be said about the tensor data without reading it (layout, or data-area hashes when known). */
export function tensorDataFromHeaders(a: CompareInput, b: CompareInput): TensorDataComparison {
	const layout = compareLayout(a.header, b.header);
	if (!layout.sameLayout) {
		return {...layout, identical: false, basis: 'layout', differing: []};
	}

	// Equal data-area hashes mean equal tensors only when every tensor sits at the same offsets.
	const sameOffsets = a.header.tensors.every(t => {
		const other = b.header.byName.get(t.name)!;
		return other.begin === t.begin && other.end === t.end;
	});
	if (a.dataSha256 && b.dataSha256 && sameOffsets) {
		return {...layout, identical: a.dataSha256 === b.dataSha256, basis: 'data-sha256', differing: []};
	}

	return {...layout, identical: null, basis: 'unknown', differing: []};
}

/**
 * Compare the bytes of every tensor the two files share (same name, dtype and shape), reading one
 * tensor at a time from each file. `differing` is capped at `maxListed` names.
 */
export async function compareTensorData(
	a: SafetensorsHeader,
	b: SafetensorsHeader,
	options: {signal?: AbortSignal; onProgress?: (done: number, total: number) => void; maxListed?: number} = {},
): Promise<TensorDataComparison> {
	const layout = compareLayout(a, b);
	const maxListed = options.maxListed ?? 1000;
	const shared = a.tensors.filter(t => {
		const other = b.byName.get(t.name);
		return other && !layout.reshaped.includes(t.name);
	});
	const differing: string[] = [];
	let differ = false;
	const readerA = await TensorReader.open(a);
	try {
		const readerB = await TensorReader.open(b);
		try {
			for (const [index, tensor] of shared.entries()) {
				if (options.signal?.aborted) {
					throw options.signal.reason instanceof Error ? options.signal.reason : new Error('cancelled');
				}

				const [x, y] = await Promise.all([readerA.readRaw(tensor.name), readerB.readRaw(tensor.name)]);
				if (!x.equals(y)) {
					differ = true;
					if (differing.length < maxListed) {
						differing.push(tensor.name);
					}
				}

				options.onProgress?.(index + 1, shared.length);
			}
		} finally {
			await readerB.close();
		}
	} finally {
		await readerA.close();
	}

	return {...layout, identical: layout.sameLayout && !differ, basis: 'bytes', differing};
}

// ---------------------------------------------------------------- two files

/**
 * Everything that differs between two files. Pass `tensorData` from compareTensorData for a byte
 * comparison; otherwise the data-area hashes (when given) or the layout decide what is known.
 */
export function compareFiles(a: CompareInput, b: CompareInput, options: {tensorData?: TensorDataComparison} = {}): Comparison {
	const both = a.stats !== null && b.stats !== null;
	return {
		paths: [a.header.path, b.header.path],
		metadata: diffMetadata(a.header.metadata, b.header.metadata),
		tags: diffTags(a.training, b.training),
		blocks: both ? diffBlocks(a.stats!.blocks, b.stats!.blocks) : null,
		totals: both ? {unet: normChange(a.stats!.unetNorm, b.stats!.unetNorm), te: normChange(a.stats!.teNorm, b.stats!.teNorm)} : null,
		rankAlpha: diffRankAlpha(a, b),
		tensors: options.tensorData ?? tensorDataFromHeaders(a, b),
		structure: {
			arch: [a.model.arch, b.model.arch],
			networkType: [a.model.networkType, b.model.networkType],
			keyStyle: [a.model.keyStyle, b.model.keyStyle],
			dtype: [a.model.dtype, b.model.dtype],
			modules: [a.model.modules.length, b.model.modules.length],
			tensors: [a.header.tensors.length, b.header.tensors.length],
		},
	};
}

// ---------------------------------------------------------------- epoch series

export type EpochEntry = {
	header: Pick<SafetensorsHeader, 'path'>;
	training: Pick<TrainingInfo, 'epoch' | 'steps' | 'sessionId' | 'outputName'>;
	stats: Pick<LoraStats, 'blocks' | 'unetNorm' | 'teNorm'>;
};

export type EpochPoint = {
	path: string;
	/** File name without folder. */
	name: string;
	epoch: number | null;
	steps: number | null;
	unetNorm: number;
	teNorm: number;
};

export type EpochSeries = {
	/** Files in training order: by ss_epoch, then ss_steps, then name. */
	points: EpochPoint[];
	/** One row per block (architecture order); values[i] belongs to points[i] (null: block absent there). */
	blocks: Array<{block: string; blockOrder: number; values: Array<number | null>}>;
	unet: number[];
	te: number[];
	/** E.g. files from different runs (session ids or output names differ). */
	warnings: string[];
};

function baseName(filePath: string): string {
	const parts = filePath.split(/[/\\]/);
	return parts.at(-1) ?? filePath;
}

/** Natural order for names like `run-000002` vs `run-000010` when metadata has no epoch. */
function compareNames(a: string, b: string): number {
	return a.localeCompare(b, 'en', {numeric: true});
}

/** Block norms and UNet/TE totals across the epochs of one run. */
export function epochSeries(entries: readonly EpochEntry[]): EpochSeries {
	const sorted = [...entries].sort((p, q) => {
		const byEpoch = (p.training.epoch ?? Number.POSITIVE_INFINITY) - (q.training.epoch ?? Number.POSITIVE_INFINITY);
		if (byEpoch !== 0 && !Number.isNaN(byEpoch)) {
			return byEpoch;
		}

		const bySteps = (p.training.steps ?? Number.POSITIVE_INFINITY) - (q.training.steps ?? Number.POSITIVE_INFINITY);
		if (bySteps !== 0 && !Number.isNaN(bySteps)) {
			return bySteps;
		}

		return compareNames(baseName(p.header.path), baseName(q.header.path));
	});
	const order = new Map<string, number>();
	const rows = new Map<string, Array<number | null>>();
	for (const [index, entry] of sorted.entries()) {
		for (const block of entry.stats.blocks) {
			order.set(block.name, block.blockOrder);
			const row = rows.get(block.name) ?? sorted.map(() => null);
			row[index] = block.norm;
			rows.set(block.name, row);
		}
	}

	const warnings: string[] = [];
	const sessions = new Set(sorted.map(e => e.training.sessionId).filter(s => s !== null));
	if (sessions.size > 1) {
		warnings.push(`files come from ${sessions.size} different training sessions (ss_session_id differs)`);
	}

	const names = new Set(sorted.map(e => e.training.outputName).filter(s => s !== null));
	if (names.size > 1) {
		warnings.push(`files have ${names.size} different output names (ss_output_name)`);
	}

	const epochs = sorted.map(e => e.training.epoch).filter(e => e !== null);
	if (new Set(epochs).size < epochs.length) {
		warnings.push('several files have the same ss_epoch');
	}

	return {
		points: sorted.map(e => ({
			path: e.header.path,
			name: baseName(e.header.path),
			epoch: e.training.epoch,
			steps: e.training.steps,
			unetNorm: e.stats.unetNorm,
			teNorm: e.stats.teNorm,
		})),
		blocks: [...rows.entries()]
			.map(([block, values]) => ({block, blockOrder: order.get(block) ?? 0, values}))
			.sort((p, q) => p.blockOrder - q.blockOrder || (p.block < q.block ? -1 : 1)),
		unet: sorted.map(e => e.stats.unetNorm),
		te: sorted.map(e => e.stats.teNorm),
		warnings,
	};
}
