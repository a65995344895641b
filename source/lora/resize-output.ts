// Assembling a resized LoRA file: tensors, shapes, alphas and metadata. Pure apart from the
// reads it is given (readRaw / factors callbacks), so tests drive it with in-memory data.
//
// Factor split and alpha (the effective update is alpha/k · up · down):
//   down = Vt_k (orthonormal rows), up = U_k · diag(S_k) · k / alpha_written
// where S are the singular values of the SOURCE's effective update scale·up·down. kohya writes
// alpha = scale·k and puts every singular value in up (up = U·diag(S_raw), down = Vt); this is
// the same file, except that the alpha actually stored (rounded to the alpha tensor's dtype, e.g.
// F16) is divided out of up, so alpha/k · up · down equals the truncated update exactly instead of
// being off by the alpha's rounding (up to 5e-4 for F16). Dialects with no per-module alpha
// tensor (PEFT, diffusers, cloneofsimo) get the whole effective update in up (their loaders use
// alpha = rank, scale 1); a PEFT `lora_adapter_metadata` is rewritten to say so.
// Modules whose rank does not change are copied byte for byte (alpha-tensor dialects) instead of
// being rebuilt from the decomposition. Modules planned to rank 0 are left out with all their
// tensors; tensors that are not factors (dora_scale, biases, LoHa/LoKr/IA3/OFT, unknown) are
// copied unchanged.
import {decodeToFloat32, encodeFromFloat32} from './dtypes.js';
import type {ResizeMethod, ResizePlan, PlannedModule} from './resize-plan.js';
import {describeMethod} from './resize-plan.js';
import type {DType, LoraModel, LoraModule, ModuleSpectrum, SafetensorsHeader} from './types.js';
import type {TensorToWrite} from './writer.js';
import {mostCommon} from './most-common.js';

export type ModuleFactors = {
	/** outDim×k row-major, orthonormal columns. */
	u: Float32Array;
	/** k×inDim row-major, orthonormal rows. */
	vt: Float32Array;
	/** The first k singular values of the source's effective update (scale·up·down), descending. */
	singularValues: ArrayLike<number>;
};

export type AssembleSources = {
	/** Raw bytes of a source tensor. */
	readRaw: (key: string) => Promise<Uint8Array>;
	/** U, Vt and S of the first k singular triplets of a module. */
	factors: (module: LoraModule, k: number) => Promise<ModuleFactors>;
	/** Checked between modules. */
	signal?: AbortSignal;
	onModule?: (done: number, total: number, name: string) => void;
};

export type AssembleOptions = {
	/** Output dtype of the factor tensors (and new alphas); default each module's own. */
	dtype?: DType;
	/** Multiplies the whole update (recipes' rescale). */
	rescale?: number;
};

export type WrittenModule = {
	name: string;
	rankBefore: number | null;
	rankAfter: number;
	/** The alpha a loader sees: the stored alpha tensor, or the rank where none is stored. */
	alphaAfter: number | null;
	froRetained: number;
	action: PlannedModule['action'];
};

export type AssembledOutput = {
	tensors: Array<TensorToWrite & {data: Uint8Array}>;
	modules: WrittenModule[];
	/** True when no module keeps a per-module alpha tensor (scale baked into up). */
	baked: boolean;
	/** Ranks and alphas of the written factor modules (for ss_network_dim/alpha). */
	ranks: number[];
	alphas: number[];
};

const encodable = new Set<DType>(['F32', 'F16', 'BF16', 'F64']);

/** The dtype a factor tensor is written in: the requested one, else its own (F8 and others → F16). */
export function outputDtypeFor(source: DType, requested?: DType): DType {
	if (requested !== undefined) {
		return requested;
	}

	return encodable.has(source) ? source : 'F16';
}

/** New shapes of down (rank first) and up (rank second), for linear, 1×1 and k×k conv alike. */
export function resizedShapes(downShape: readonly number[], upShape: readonly number[], k: number): {down: number[]; up: number[]} {
	const down = [...downShape];
	const up = [...upShape];
	down[0] = k;
	up[1] = k;
	return {down, up};
}

/** A value as it reads back after a round trip through `dtype`. */
export function roundTrip(value: number, dtype: DType): number {
	return decodeToFloat32(encodeFromFloat32(Float32Array.of(value), dtype), dtype)[0]!;
}

/** Whether a module stores its alpha as a tensor in the output (kohya/LyCORIS style). */
export function keepsAlphaTensor(model: Pick<LoraModel, 'keyStyle'>, module: LoraModule): boolean {
	if (module.tensors['alpha'] !== undefined) {
		return true;
	}

	// kohya names (no dots) always carry their alpha as `<name>.alpha`; write one when it was implied.
	return !module.name.includes('.') && !module.name.includes(':') && (model.keyStyle === 'kohya' || model.keyStyle === 'lycoris' || model.keyStyle === 'mixed');
}

/**
 * up (outDim×k) and down (k×inDim) with alpha/k · up · down = U_k·diag(S_k·rescale)·Vt_k.
 * `alpha` is the value a loader will read (after rounding).
 */
export function buildFactors(factors: ModuleFactors, outDim: number, inDim: number, k: number, alpha: number, rescale = 1): {up: Float32Array; down: Float32Array} {
	const up = new Float32Array(outDim * k);
	const factor = new Float64Array(k);
	for (let j = 0; j < k; j++) {
		factor[j] = factors.singularValues[j]! * rescale * k / alpha;
	}

	for (let i = 0; i < outDim; i++) {
		const row = i * k;
		for (let j = 0; j < k; j++) {
			up[row + j] = factors.u[row + j]! * factor[j]!;
		}
	}

	const down = factors.vt.length === k * inDim ? factors.vt : factors.vt.slice(0, k * inDim);
	return {up, down};
}

function throwIfAborted(signal: AbortSignal | undefined): void {
	if (signal?.aborted) {
		throw signal.reason instanceof Error ? signal.reason : new Error('cancelled');
	}
}

function scaleRaw(bytes: Uint8Array, from: DType, to: DType, multiplier: number): Uint8Array {
	if (from === to && multiplier === 1) {
		return bytes;
	}

	const values = decodeToFloat32(bytes, from);
	if (multiplier !== 1) {
		for (let i = 0; i < values.length; i++) {
			values[i]! *= multiplier;
		}
	}

	return encodeFromFloat32(values, to);
}

/**
 * Build every output tensor, in the source's order (a module's new tensors take the place of its
 * old ones), with its bytes. Memory: the output's size (outputs are smaller than their source).
 */
export async function assembleOutput(
	header: SafetensorsHeader,
	model: LoraModel,
	plan: ResizePlan,
	sources: AssembleSources,
	options: AssembleOptions = {},
): Promise<AssembledOutput> {
	const moduleByKey = new Map<string, LoraModule>();
	for (const module of model.modules) {
		for (const key of Object.values(module.tensors)) {
			moduleByKey.set(key, module);
		}
	}

	const planned = new Map(plan.modules.map(m => [m.name, m]));
	const rescale = options.rescale ?? 1;
	const tensors: AssembledOutput['tensors'] = [];
	const written: WrittenModule[] = [];
	const ranks: number[] = [];
	const alphas: number[] = [];
	const emitted = new Set<string>();
	let anyAlphaTensor = false;
	let anyFactorModule = false;
	const total = plan.modules.length;

	const copy = async (key: string) => {
		const info = header.byName.get(key)!;
		tensors.push({name: key, dtype: info.dtype, shape: [...info.shape], data: await sources.readRaw(key)});
	};

	for (const info of header.tensors) {
		const module = moduleByKey.get(info.name);
		const plannedModule = module ? planned.get(module.name) : undefined;
		if (!module || !plannedModule || plannedModule.action === 'copy') {
			await copy(info.name);
			continue;
		}

		if (emitted.has(module.name)) {
			continue;
		}

		emitted.add(module.name);
		throwIfAborted(sources.signal);
		sources.onModule?.(emitted.size, total, module.name);
		const result: WrittenModule = {
			name: module.name,
			rankBefore: plannedModule.rankBefore,
			rankAfter: plannedModule.rankAfter,
			alphaAfter: null,
			froRetained: plannedModule.froRetained,
			action: plannedModule.action,
		};
		written.push(result);
		if (plannedModule.action === 'remove') {
			continue;
		}

		anyFactorModule = true;
		const emittedTensors = await moduleTensors(header, model, module, plannedModule, sources, options.dtype, rescale);
		tensors.push(...emittedTensors.tensors);
		result.alphaAfter = emittedTensors.alpha;
		ranks.push(plannedModule.rankAfter);
		alphas.push(emittedTensors.alpha);
		anyAlphaTensor ||= emittedTensors.alphaTensor;
	}

	return {tensors, modules: written, baked: anyFactorModule && !anyAlphaTensor, ranks, alphas};
}

async function moduleTensors(
	header: SafetensorsHeader,
	model: LoraModel,
	module: LoraModule,
	planned: PlannedModule,
	sources: AssembleSources,
	requested: DType | undefined,
	rescale: number,
): Promise<{tensors: AssembledOutput['tensors']; alpha: number; alphaTensor: boolean}> {
	const downKey = module.tensors['down']!;
	const upKey = module.tensors['up']!;
	const downInfo = header.byName.get(downKey)!;
	const upInfo = header.byName.get(upKey)!;
	const alphaKey = module.tensors['alpha'];
	const alphaInfo = alphaKey === undefined ? undefined : header.byName.get(alphaKey);
	const withAlpha = keepsAlphaTensor(model, module);
	const k = planned.rankAfter;
	const downDtype = outputDtypeFor(downInfo.dtype, requested);
	const upDtype = outputDtypeFor(upInfo.dtype, requested);
	const alphaDtype = requested ?? (alphaInfo && encodable.has(alphaInfo.dtype) ? alphaInfo.dtype : downDtype);
	const out: AssembledOutput['tensors'] = [];
	const others: string[] = [];
	for (const [role, key] of Object.entries(module.tensors)) {
		if (role !== 'down' && role !== 'up' && role !== 'alpha') {
			others.push(key);
		}
	}

	const unchangedRank = planned.action === 'keep' && rescale === 1;
	let alpha: number;
	if (unchangedRank && withAlpha) {
		// Same rank, same alpha: copy (converting dtype only when asked).
		const downBytes = scaleRaw(await sources.readRaw(downKey), downInfo.dtype, downDtype, 1);
		const upBytes = scaleRaw(await sources.readRaw(upKey), upInfo.dtype, upDtype, 1);
		const written = roundTrip(module.scale * (module.rank ?? k), alphaDtype);
		const sourceAlpha = alphaInfo ? decodeToFloat32(await sources.readRaw(alphaKey!), alphaInfo.dtype)[0]! : written;
		alpha = alphaInfo && alphaInfo.dtype === alphaDtype ? sourceAlpha : roundTrip(sourceAlpha, alphaDtype);
		const pieces = new Map<string, AssembledOutput['tensors'][number]>([
			['down', {name: downKey, dtype: downDtype, shape: [...downInfo.shape], data: downBytes}],
			['up', {name: upKey, dtype: upDtype, shape: [...upInfo.shape], data: upBytes}],
		]);
		pieces.set('alpha', {name: alphaKey ?? `${module.name}.alpha`, dtype: alphaDtype, shape: [], data: encodeFromFloat32(Float32Array.of(alpha), alphaDtype)});
		out.push(...ordered(module, pieces));
	} else if (unchangedRank && module.scale === 1) {
		// No alpha stored and none needed: copy.
		alpha = k;
		out.push(
			{name: downKey, dtype: downDtype, shape: [...downInfo.shape], data: scaleRaw(await sources.readRaw(downKey), downInfo.dtype, downDtype, 1)},
			{name: upKey, dtype: upDtype, shape: [...upInfo.shape], data: scaleRaw(await sources.readRaw(upKey), upInfo.dtype, upDtype, 1)},
		);
	} else {
		alpha = withAlpha ? roundTrip(module.scale * k, alphaDtype) : k;
		if (!(Math.abs(alpha) > 0) || !Number.isFinite(alpha)) {
			// An alpha that rounds to zero (or overflows) cannot carry the scale: fall back to alpha = rank.
			alpha = roundTrip(k, alphaDtype);
		}

		const factors = await sources.factors(module, k);
		const {up, down} = buildFactors(factors, module.outDim, module.inDim, k, alpha, rescale);
		const shapes = resizedShapes(downInfo.shape, upInfo.shape, k);
		const pieces = new Map<string, AssembledOutput['tensors'][number]>([
			['down', {name: downKey, dtype: downDtype, shape: shapes.down, data: encodeFromFloat32(down, downDtype)}],
			['up', {name: upKey, dtype: upDtype, shape: shapes.up, data: encodeFromFloat32(up, upDtype)}],
		]);
		if (withAlpha) {
			pieces.set('alpha', {name: alphaKey ?? `${module.name}.alpha`, dtype: alphaDtype, shape: [], data: encodeFromFloat32(Float32Array.of(alpha), alphaDtype)});
		}

		out.push(...ordered(module, pieces));
	}

	for (const key of others) {
		const info = header.byName.get(key)!;
		out.push({name: key, dtype: info.dtype, shape: [...info.shape], data: await sources.readRaw(key)});
	}

	return {tensors: out, alpha, alphaTensor: withAlpha};
}

/** The module's new tensors in the order its roles had in the source; a new alpha goes first. */
function ordered(module: LoraModule, pieces: Map<string, AssembledOutput['tensors'][number]>): AssembledOutput['tensors'] {
	const out: AssembledOutput['tensors'] = [];
	if (pieces.has('alpha') && module.tensors['alpha'] === undefined) {
		out.push(pieces.get('alpha')!);
	}

	for (const role of Object.keys(module.tensors)) {
		const piece = pieces.get(role);
		if (piece) {
			out.push(piece);
		}
	}

	return out;
}

/** Python's str(float): "4.0" for whole numbers (kohya stores alphas that way). */
export function pythonFloat(value: number): string {
	if (Number.isInteger(value) && Math.abs(value) < 1e16) {
		return `${value}.0`;
	}

	return String(value);
}

/** ss_network_dim / ss_network_alpha values that are true for the written modules. */
export function networkDimAlpha(ranks: readonly number[], alphas: readonly number[]): {dim: string; alpha: string} {
	const distinctRanks = new Set(ranks);
	const distinctAlphas = new Set(alphas.map(a => Number(a.toPrecision(7))));
	const dim = distinctRanks.size === 1 ? String([...distinctRanks][0]) : 'Dynamic';
	const alpha = distinctAlphas.size === 1 ? pythonFloat([...distinctAlphas][0]!) : 'Dynamic';
	return {dim, alpha};
}

export type ResizeRecord = {
	method: ResizeMethod;
	toolVersion: string;
	/** sha256 of the source file's data area (its sshs_model_hash when that is current). */
	sourceSha256: string;
	sourceFile: string;
	dtype: DType | null;
	/** The recipe threshold actually used, when there is one. */
	threshold: number | null;
	/** The base checkpoint a spn_ckpt / fro_ckpt recipe scored against (its file name, no folder). */
	base?: {file: string; sizeBytes: number | null; unscored: number};
};

/** JSON for the `lorascope_resize` metadata key. */
export function resizeRecordJson(record: ResizeRecord, plan: ResizePlan): string {
	return JSON.stringify({
		tool: 'lorascope',
		version: record.toolVersion,
		method: record.method,
		description: describeMethod(record.method),
		threshold: record.threshold === null || Number.isFinite(record.threshold) ? record.threshold : String(record.threshold),
		dtype: record.dtype,
		source: {file: record.sourceFile, sha256: record.sourceSha256},
		...(record.base ? {base: record.base} : {}),
		froRetained: Number(plan.totals.froRetained.toFixed(6)),
		rankBefore: plan.totals.rankBefore,
		rankAfter: plan.totals.rankAfter,
		removed: plan.totals.removed,
	});
}

/**
 * Metadata of the output: the source's, with ss_network_dim/alpha made true (for files that carry
 * kohya keys), a training comment saying what was done, the `lorascope_resize` record and, for
 * PEFT files, the adapter config rewritten to rank = alpha per module. The sshs_* hashes are
 * added by the caller once the tensor bytes exist.
 */
export function resizedMetadata(
	source: Readonly<Record<string, string>>,
	model: Pick<LoraModel, 'keyStyle' | 'modules'>,
	plan: ResizePlan,
	output: Pick<AssembledOutput, 'ranks' | 'alphas' | 'baked' | 'modules'>,
	record: ResizeRecord,
): Record<string, string> {
	const metadata: Record<string, string> = {...source};
	const kohyaKeys = source['ss_network_dim'] !== undefined || source['ss_network_alpha'] !== undefined || model.keyStyle === 'kohya' || model.keyStyle === 'lycoris';
	if (kohyaKeys && output.ranks.length > 0) {
		const {dim, alpha} = networkDimAlpha(output.ranks, output.alphas);
		metadata['ss_network_dim'] = dim;
		metadata['ss_network_alpha'] = alpha;
	}

	const before = plan.modules.filter(m => m.action !== 'copy' && m.rankBefore !== null).map(m => m.rankBefore!);
	const after = output.ranks;
	const range = (values: readonly number[]) => {
		if (values.length === 0) {
			return '0';
		}

		const lo = Math.min(...values);
		const hi = Math.max(...values);
		return lo === hi ? String(lo) : `${lo}-${hi}`;
	};

	const oldComment = source['ss_training_comment'];
	const comment = `lorascope resize ${describeMethod(record.method)}: rank ${range(before)} -> ${range(after)}, ${(plan.totals.froRetained * 100).toFixed(2)}% Frobenius energy kept`;
	metadata['ss_training_comment'] = oldComment && oldComment !== 'None' ? `${comment}; ${oldComment}` : comment;
	metadata['lorascope_resize'] = resizeRecordJson(record, plan);
	const adapter = source['lora_adapter_metadata'];
	if (adapter !== undefined && output.baked) {
		const rewritten = rewriteAdapterMetadata(adapter, model.modules, output.modules);
		if (rewritten !== null) {
			metadata['lora_adapter_metadata'] = rewritten;
		}
	}

	return metadata;
}

/**
 * diffusers' `lora_adapter_metadata` (a LoraConfig as JSON, keys optionally prefixed by component
 * such as `transformer.r`) rewritten for an output whose scale is baked into the factors: r and
 * lora_alpha the most common new rank, rank_pattern = alpha_pattern = every other module's rank,
 * rsLoRA off. Null when the JSON cannot be read (the caller keeps the original).
 */
export function rewriteAdapterMetadata(json: string, modules: ReadonlyArray<Pick<LoraModule, 'name'>>, written: readonly WrittenModule[]): string | null {
	let config: unknown;
	try {
		config = JSON.parse(json);
	} catch {
		return null;
	}

	if (typeof config !== 'object' || config === null || Array.isArray(config)) {
		return null;
	}

	const object = config as Record<string, unknown>;
	const kept = written.filter(m => m.rankAfter > 0 && m.action !== 'copy');
	const prefixes = new Set<string>();
	for (const key of Object.keys(object)) {
		const match = /^(?:(.+)\.)?(?:r|lora_alpha)$/.exec(key);
		if (match) {
			prefixes.add(match[1] ?? '');
		}
	}

	if (prefixes.size === 0) {
		prefixes.add('');
	}

	const known = new Set(modules.map(m => m.name));
	for (const prefix of prefixes) {
		const mine = kept.filter(m => known.has(m.name) && (prefix === '' || m.name.startsWith(`${prefix}.`)));
		const common = mostCommon(mine.map(m => m.rankAfter));
		if (common === undefined) {
			continue;
		}

		const pattern: Record<string, number> = {};
		for (const module of mine) {
			if (module.rankAfter !== common) {
				pattern[prefix === '' ? module.name.replace(/^(?:base_model\.model\.)?(?:transformer|unet|text_encoder(?:_\d)?)\./, '') : module.name.slice(prefix.length + 1)] = module.rankAfter;
			}
		}

		const key = (name: string) => (prefix === '' ? name : `${prefix}.${name}`);
		object[key('r')] = common;
		object[key('lora_alpha')] = common;
		object[key('rank_pattern')] = pattern;
		object[key('alpha_pattern')] = {...pattern};
		if (key('use_rslora') in object) {
			object[key('use_rslora')] = false;
		}
	}

	return JSON.stringify(object);
}

/** Bytes of the tensors the output copies unchanged: everything but the factors and alphas of resizable modules. */
export function copiedBytesOf(header: SafetensorsHeader, model: LoraModel, spectra: readonly ModuleSpectrum[]): number {
	const resizable = new Set(spectra.filter(s => s.resizable).map(s => s.name));
	const factorKeys = new Set<string>();
	for (const module of model.modules) {
		if (resizable.has(module.name)) {
			for (const role of ['down', 'up', 'alpha']) {
				const key = module.tensors[role];
				if (key !== undefined) {
					factorKeys.add(key);
				}
			}
		}
	}

	let bytes = 0;
	for (const tensor of header.tensors) {
		if (!factorKeys.has(tensor.name)) {
			bytes += tensor.end - tensor.begin;
		}
	}

	return bytes;
}
