// Job 'decompose': the singular spectrum of every resizable module of a LoRA file, for the resize
// planner. The full factorisation (singular values plus the small maps that give U and Vt, see
// kernels/decompose.ts) stays in the engine's cache keyed by path + size + mtime, so reopening
// the preview and writing the output reuse it; only the spectra cross to the client.
import path from 'node:path';
import {loadLoraModel} from '../../lora/model.js';
import {readHeader, TensorReader} from '../../lora/safetensors.js';
import type {DecompositionSummary, DType, LoraModule, ModuleSpectrum, SafetensorsHeader} from '../../lora/types.js';
import type {JobContext} from '../job-context.js';
import {factorizeCore, moduleCoreFromGrams, spectrumOfCore, type FactorCore, type ModuleFactorization} from '../kernels/decompose.js';
import {getEngineKernels} from '../kernels/index.js';
import {inputLength, type EngineKernels, type MatrixInput} from '../kernels/types.js';
import type {Device, LogLevel} from '../protocol.js';
import {registerJob} from '../registry.js';

declare module '../protocol.js' {
	interface JobKinds {
		decompose: {params: {path: string; device?: Device}; result: DecompositionSummary};
	}
}

export type CachedDecomposition = {
	summary: DecompositionSummary;
	/**
	 * Full factorisation (singular values + the maps giving U and Vt, see moduleVectors) by module
	 * name, for resizable modules with a non-empty spectrum. Computed on demand from the cached
	 * rank×rank core (≈1 ms per module), so the preview's decomposition pass needs no
	 * eigenvectors; its singular values are exactly the spectrum's.
	 */
	factors: {get: (name: string) => ModuleFactorization | undefined; has: (name: string) => boolean};
};

type ModuleCore = {core: FactorCore; outDim: number; inDim: number; scale: number; singularValues: Float64Array};

function lazyFactors(cores: Map<string, ModuleCore>): CachedDecomposition['factors'] {
	return {
		has: name => cores.has(name),
		get(name) {
			const entry = cores.get(name);
			if (!entry) {
				return undefined;
			}

			const factorization = factorizeCore(entry.core, entry.outDim, entry.inDim, entry.scale, entry.singularValues.length);
			return {...factorization, singularValues: entry.singularValues};
		},
	};
}

/** Decompositions kept per engine process (each holds about two rank×rank float64 matrices per module). */
const maxCachedFiles = 4;

export function decompositionCacheKey(filePath: string, sizeBytes: number, mtimeMs: number): string {
	return `${cachePrefix(filePath)}${sizeBytes}\0${mtimeMs}`;
}

function cachePrefix(filePath: string): string {
	return `decompose\0${path.resolve(filePath)}\0`;
}

/** Stores a decomposition, dropping older versions of the same file and the least recent files beyond the cap. */
function storeDecomposition(cache: Map<string, unknown>, decomposition: CachedDecomposition): void {
	const {path: filePath, sizeBytes, mtimeMs} = decomposition.summary;
	const prefix = cachePrefix(filePath);
	const others: string[] = [];
	for (const key of [...cache.keys()]) {
		if (key.startsWith(prefix)) {
			cache.delete(key);
		} else if (key.startsWith('decompose\0')) {
			others.push(key);
		}
	}

	// Map iteration follows insertion order: the first keys are the oldest.
	for (const key of others.slice(0, Math.max(0, others.length - (maxCachedFiles - 1)))) {
		cache.delete(key);
	}

	cache.set(decompositionCacheKey(filePath, sizeBytes, mtimeMs), decomposition);
}

/** The cached decomposition of a file as it was when decomposed, or undefined. */
export function getCachedDecomposition(cache: Map<string, unknown>, filePath: string, sizeBytes: number, mtimeMs: number): CachedDecomposition | undefined {
	return cache.get(decompositionCacheKey(filePath, sizeBytes, mtimeMs)) as CachedDecomposition | undefined;
}

export type DecomposeOptions = {
	kernels: Pick<EngineKernels, 'gramPair' | 'productGramCols' | 'productGramRows'>;
	device: string;
	signal?: AbortSignal;
	/** Called after each module with modules done / total and tensor bytes read so far. */
	onProgress?: (done: number, total: number, label: string, bytesDone: number) => void;
	log?: (level: LogLevel, message: string) => void;
	/** Awaited between modules: lets a cancel message in (the server's ctx.yield). */
	yieldControl?: () => Promise<void>;
};

/** Why a module cannot be resized, or null when it can. */
export function nonResizableReason(module: LoraModule): string | null {
	if (module.algo === 'locon-tucker') {
		return 'LoCon Tucker (lora_mid) module: copied unchanged';
	}

	if (module.algo !== 'lora') {
		return `${module.algo} module: copied unchanged`;
	}

	if (module.splitQkv !== undefined) {
		return 'split QKV module: copied unchanged';
	}

	if (module.tensors.up === undefined || module.tensors.down === undefined || module.rank === null || module.rank <= 0) {
		return 'incomplete LoRA pair: copied unchanged';
	}

	return null;
}

function factorDtype(header: SafetensorsHeader, module: LoraModule): DType {
	const key = module.tensors.down ?? module.tensors.up ?? Object.values(module.tensors)[0];
	return (key === undefined ? undefined : header.byName.get(key)?.dtype) ?? 'F32';
}

type RawFactors = {up: MatrixInput; down: MatrixInput; bytes: number};
type Prefetched = RawFactors & {grams: {gu: Float64Array; gd: Float64Array} | null};

/** Up and down as raw bytes; one read when they sit close together in the file (kohya sorts them adjacently). */
async function readFactors(reader: TensorReader, module: LoraModule): Promise<RawFactors> {
	const up = reader.info(module.tensors.up!);
	const down = reader.info(module.tensors.down!);
	const upBytes = up.end - up.begin;
	const downBytes = down.end - down.begin;
	const begin = Math.min(up.begin, down.begin);
	const end = Math.max(up.end, down.end);
	if (end - begin <= upBytes + downBytes + (64 * 1024)) {
		const range = await reader.readDataRange(begin, end - begin);
		return {
			up: {dtype: up.dtype, bytes: range.subarray(up.begin - begin, up.end - begin)},
			down: {dtype: down.dtype, bytes: range.subarray(down.begin - begin, down.end - begin)},
			bytes: upBytes + downBytes,
		};
	}

	const [upRaw, downRaw] = await Promise.all([reader.readRaw(up.name), reader.readRaw(down.name)]);
	return {up: {dtype: up.dtype, bytes: upRaw}, down: {dtype: down.dtype, bytes: downRaw}, bytes: upBytes + downBytes};
}

function hasNonFinite(values: Float64Array): boolean {
	for (const value of values) {
		if (!Number.isFinite(value)) {
			return true;
		}
	}

	return false;
}

/** Decomposes every resizable module of an already-read header. */
export async function decomposeHeader(header: SafetensorsHeader, options: DecomposeOptions): Promise<CachedDecomposition> {
	const started = performance.now();
	const modules: ModuleSpectrum[] = [];
	const cores = new Map<string, ModuleCore>();
	let refined = 0;
	let bytesDone = 0;
	const reader = await TensorReader.open(header);
	try {
		// Alpha tensors hold their values in the data area: read them for exact scales.
		const model = await loadLoraModel(header, reader);
		const total = model.modules.length;
		// Reads and Grams run one module ahead (onnxruntime computes off the JS thread), so they
		// overlap with the previous module's r×r float64 work on the other core.
		const resizable = model.modules.map(module => nonResizableReason(module) === null);
		const prefetch = (index: number): Promise<Prefetched> | undefined => {
			const module = model.modules[index];
			if (!module || !resizable[index]) {
				return undefined;
			}

			const promise = readFactors(reader, module).then(async raw => {
				const rank = module.rank!;
				if (inputLength(raw.up) !== module.outDim * rank || inputLength(raw.down) !== rank * module.inDim) {
					return {...raw, grams: null};
				}

				return {...raw, grams: await options.kernels.gramPair(raw.up, module.outDim, rank, raw.down, module.inDim)};
			});
			// Awaited when used; an abandoned prefetch must not become an unhandled rejection.
			promise.catch(() => undefined);
			return promise;
		};

		let next = prefetch(0);
		for (const [index, module] of model.modules.entries()) {
			const current = next;
			// The next module's read and Gram start only once this one's data is in, keeping one Gram in flight.
			await current?.catch(() => undefined);
			next = prefetch(index + 1);
			if (options.signal?.aborted) {
				throw options.signal.reason instanceof Error ? options.signal.reason : new Error('cancelled');
			}

			const spectrum: ModuleSpectrum = {
				name: module.name,
				block: module.block,
				blockOrder: module.blockOrder,
				component: module.component,
				algo: module.algo,
				kind: module.kind,
				outDim: module.outDim,
				inDim: module.inDim,
				kernel: module.kernel,
				rank: module.rank,
				alpha: module.alpha,
				scale: module.scale,
				dtype: factorDtype(header, module),
				singularValues: [],
				resizable: false,
			};
			let note = nonResizableReason(module);
			if (note === null && current) {
				const rank = module.rank!;
				const {up, down, bytes, grams} = await current;
				if (!grams) {
					note = `factor shapes do not match ${module.outDim}×${rank}×${module.inDim}: copied unchanged`;
				} else {
					const core = await moduleCoreFromGrams(grams.gu, grams.gd, up, down, module.outDim, rank, module.inDim, options.kernels);
					const singularValues = core && (hasNonFinite(core.m) || hasNonFinite(core.l)) ? null : spectrumOfCore(core, module.scale);
					if (!singularValues || hasNonFinite(singularValues)) {
						note = 'non-finite values: copied unchanged';
					} else {
						spectrum.resizable = true;
						spectrum.singularValues = Array.from(singularValues);
						if (core && singularValues.length > 0) {
							cores.set(module.name, {core, outDim: module.outDim, inDim: module.inDim, scale: module.scale, singularValues});
							refined += core.refined ? 1 : 0;
						}

						if (module.hasDora) {
							note = 'DoRA: dora_scale is copied, result approximate';
						}
					}
				}

				bytesDone += bytes;
			}

			if (note !== null) {
				spectrum.note = note;
			}

			modules.push(spectrum);
			options.onProgress?.(index + 1, total, module.name, bytesDone);
			await options.yieldControl?.();
		}
	} finally {
		await reader.close();
	}

	const summary: DecompositionSummary = {
		path: header.path,
		sizeBytes: header.sizeBytes,
		mtimeMs: header.mtimeMs,
		device: options.device,
		modules,
		seconds: (performance.now() - started) / 1000,
	};
	if (refined > 0) {
		options.log?.('info', `${refined} module(s) with strongly cancelling factors took the refined (CholeskyQR2) route`);
	}

	return {summary, factors: lazyFactors(cores)};
}

async function decomposeJob(params: {path: string; device?: Device}, ctx: JobContext): Promise<DecompositionSummary> {
	const header = await readHeader(params.path);
	const key = decompositionCacheKey(header.path, header.sizeBytes, header.mtimeMs);
	const cached = ctx.cache.get(key) as CachedDecomposition | undefined;
	if (cached) {
		ctx.progress(1, 1, 'cached');
		return cached.summary;
	}

	const device = params.device === 'cpu' ? 'cpu' : ctx.device;
	const kernels = await getEngineKernels(device, ctx.log);
	const decomposition = await decomposeHeader(header, {
		kernels,
		device: kernels.backend === 'js' ? 'cpu (plain JS)' : kernels.device,
		signal: ctx.signal,
		onProgress: (done, total, label, bytesDone) => {
			ctx.progress(done, total, label, bytesDone);
		},
		yieldControl: ctx.yield,
		log: ctx.log,
	});
	storeDecomposition(ctx.cache, decomposition);
	return decomposition.summary;
}

/**
 * The decomposition of a file, from the engine cache or computed now as the 'decompose' job would
 * (for jobs that need the singular vectors: resize-write, base-norms with subspace).
 */
export async function decompositionOf(header: SafetensorsHeader, ctx: JobContext): Promise<CachedDecomposition> {
	let cached = getCachedDecomposition(ctx.cache, header.path, header.sizeBytes, header.mtimeMs);
	if (!cached) {
		await decomposeJob({path: header.path}, ctx);
		cached = getCachedDecomposition(ctx.cache, header.path, header.sizeBytes, header.mtimeMs);
		if (!cached) {
			throw new Error('decomposition did not produce a result');
		}
	}

	return cached;
}

registerJob('decompose', decomposeJob);
