// Job 'base-norms': σ_max and Frobenius norm of the base checkpoint weight behind every module of
// a LoRA, for the spn_ckpt / fro_ckpt recipe scores. Streams over the checkpoint in file order,
// reading only the mapped weights (row ranges for fused qkv), and caches the figures on disk per
// checkpoint (path + size + mtime), so the second run with any LoRA on the same base is instant.
// With need 'frobenius' (fro_ckpt-only recipes) it computes only ‖W‖_F: one forward stream of the
// mapped byte ranges with a read ahead, summing squares straight from the stored bits, so it runs
// at read speed and loads no kernels. The cache remembers per slice which norms it holds; a later
// 'both' request computes only the missing σ_max values.
//
// With subspace: true it also computes, for the `subspace` recipe term, |uᵢᵀ·W·vᵢ| for every
// singular triplet of each mapped module's scale·up·down (U = up·leftMap, Vt = rightMap·down from
// the LoRA's cached decomposition, computed first if needed): W·downᵀ on the engine kernels
// (float64 accumulation), then Z = upᵀ·(W·downᵀ) (rank×rank) and dᵢ = leftMap[:,i]ᵀ·Z·rightMap[i,:]ᵀ
// in float64, never forming U or V. These depend on the LoRA too, so they are cached per LoRA/base
// pair, in memory and on disk (subspace-cache.ts), keyed by both files' path + size + mtime.
//
// σ_max: Golub–Kahan–Lanczos bidiagonalisation with full reorthogonalisation, its matrix-vector
// products on the engine kernels (onnxruntime), stopped when the largest Ritz value settles to
// 1e-6 relative (error ≈ 1e-6). elias-gaeros uses torch.svd_lowrank(q=1, niter=64) (64 power steps); Lanczos
// reaches the same value in a fraction of the products.
import type {FileHandle} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import {mapModulesToBase, baseMapModulesOf, type BaseSlice} from '../../lora/base-map.js';
import {decodeInto, decodeToFloat32, dtypeSize, isFloatDType} from '../../lora/dtypes.js';
import {buildLoraModel} from '../../lora/model.js';
import type {BaseNorm} from '../../lora/resize-plan.js';
import {errnoReason, LoraFileError, openForRead, readHeader, TensorReader} from '../../lora/safetensors.js';
import type {DType, SafetensorsHeader} from '../../lora/types.js';
import type {JobContext} from '../job-context.js';
import type {ModuleFactorization} from '../kernels/decompose.js';
import {getEngineKernels} from '../kernels/index.js';
import type {EngineKernels} from '../kernels/types.js';
import {registerJob} from '../registry.js';
import {decompositionOf} from './decompose.js';
import {cacheFilePath, readJsonCache, saveJsonCache} from './json-cache.js';
import {readSubspaceCache, saveSubspaceCache} from './subspace-cache.js';

/** Which base norms a caller needs: fro_ckpt alone needs only ‖W‖_F; spn_ckpt needs σ_max too. */
export type BaseNormsNeed = 'frobenius' | 'both';

export type BaseNormsParams = {
	basePath: string;
	loraPath: string;
	/** Overrides the cache folder (tests); default defaultCacheDir(). */
	cacheDir?: string;
	/**
	 * Default 'both' (σ_max and ‖W‖_F). 'frobenius' computes only ‖W‖_F, at read speed; its
	 * result has `spectral` NaN wherever the cache does not already hold σ_max.
	 */
	need?: BaseNormsNeed;
	/** Also compute BaseNorm.subspace (|uᵢᵀ·W·vᵢ| per singular value) for every mapped module. */
	subspace?: boolean;
};

export type BaseNormsResult = {
	norms: Record<string, BaseNorm>;
	/** Modules with no base weight, with the reason. */
	unmapped: string[];
	unmappedReasons: Record<string, string>;
	seconds: number;
	/** True when every norm came from the disk cache (and the subspace values, if asked, from memory). */
	cached: boolean;
	/**
	 * Base slices whose ‖W‖_F / σ_max this run computed (the rest came from the disk cache), and
	 * with subspace: true the modules whose uᵢᵀ·W·vᵢ it computed (0 when held in memory).
	 * Always set by the job; optional so hand-built results (fakes in tests) need not carry it.
	 */
	computed?: {frobenius: number; spectral: number; subspace?: number};
	device: string;
};

declare module '../protocol.js' {
	interface JobKinds {
		'base-norms': {params: BaseNormsParams; result: BaseNormsResult};
	}
}

/** $LORASCOPE_CACHE_DIR, else $XDG_CACHE_HOME/lorascope, else ~/.cache/lorascope. */
export function defaultCacheDir(): string {
	const explicit = process.env['LORASCOPE_CACHE_DIR'];
	if (explicit) {
		return explicit;
	}

	const xdg = process.env['XDG_CACHE_HOME'];
	return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache'), 'lorascope');
}

/** Per base slice: ‖W‖_F always, σ_max once a 'both' request computed it. */
type CachedNorm = {frobenius: number; spectral?: number};

/**
 * Version 2 entries may lack `spectral` (computed by a 'frobenius' request). Version 1 files
 * (every entry with both norms) are still read; anything else is ignored and recomputed.
 */
const cacheVersion = 2;

type NormsCacheFile = {
	version: typeof cacheVersion;
	path: string;
	sizeBytes: number;
	mtimeMs: number;
	/** By slice id (tensor key, or key[start:end] for row ranges). */
	norms: Record<string, CachedNorm>;
};

function sliceId(slice: BaseSlice): string {
	return slice.rows ? `${slice.key}[${slice.rows[0]}:${slice.rows[1]}]` : slice.key;
}

function cacheFileFor(cacheDir: string, checkpoint: string): string {
	return cacheFilePath(cacheDir, 'base-norms', path.resolve(checkpoint));
}

function isRecord(value: unknown): value is Record<string, unknown> {
	return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNorm(value: unknown): value is number {
	return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

/** The cached norms of this exact checkpoint file; empty when missing, stale or damaged. */
async function readCache(file: string, checkpoint: string, sizeBytes: number, mtimeMs: number): Promise<Map<string, CachedNorm>> {
	// A Map: slice ids are tensor names from an untrusted file ("__proto__" included).
	// Missing, damaged or stale: empty, and the norms are recomputed.
	const norms = new Map<string, CachedNorm>();
	const parsed = await readJsonCache(file);
	if (!isRecord(parsed) || (parsed['version'] !== 1 && parsed['version'] !== cacheVersion) || parsed['path'] !== path.resolve(checkpoint)
		|| parsed['sizeBytes'] !== sizeBytes || parsed['mtimeMs'] !== mtimeMs || !isRecord(parsed['norms'])) {
		return norms;
	}

	for (const [id, value] of Object.entries(parsed['norms'])) {
		if (!isRecord(value) || !isNorm(value['frobenius'])) {
			continue;
		}

		if (isNorm(value['spectral'])) {
			norms.set(id, {frobenius: value['frobenius'], spectral: value['spectral']});
		} else if (parsed['version'] === cacheVersion && value['spectral'] === undefined) {
			norms.set(id, {frobenius: value['frobenius']});
		}
	}

	return norms;
}

function dot(a: Float32Array, b: Float32Array): number {
	let sum = 0;
	for (let i = 0; i < a.length; i++) {
		sum += a[i]! * b[i]!;
	}

	return sum;
}

function normalize(v: Float32Array): number {
	const norm = Math.sqrt(dot(v, v));
	if (norm > 0) {
		for (let i = 0; i < v.length; i++) {
			v[i]! /= norm;
		}
	}

	return norm;
}

/** Removes the components of v along each (orthonormal) vector of `basis`, twice for stability. */
function reorthogonalize(v: Float32Array, basis: readonly Float32Array[]): void {
	for (let pass = 0; pass < 2; pass++) {
		for (const q of basis) {
			const c = dot(v, q);
			for (let i = 0; i < v.length; i++) {
				v[i]! -= c * q[i]!;
			}
		}
	}
}

/** Largest singular value of an upper bidiagonal matrix (diag α, superdiag β) via BᵀB power steps. */
function bidiagonalSigmaMax(alpha: readonly number[], beta: readonly number[]): number {
	const k = alpha.length;
	if (k === 0) {
		return 0;
	}

	// T = BᵀB is symmetric tridiagonal: d_j = α_j² + β_{j−1}², e_j = α_j·β_j.
	const d = new Float64Array(k);
	const e = new Float64Array(Math.max(0, k - 1));
	for (let j = 0; j < k; j++) {
		d[j] = (alpha[j]! ** 2) + (j > 0 ? beta[j - 1]! ** 2 : 0);
		if (j < k - 1) {
			e[j] = alpha[j]! * beta[j]!;
		}
	}

	// Bisection on the Sturm count gives the largest eigenvalue to full precision.
	let hi = 0;
	for (let j = 0; j < k; j++) {
		hi = Math.max(hi, d[j]! + Math.abs(j > 0 ? e[j - 1]! : 0) + Math.abs(j < k - 1 ? e[j]! : 0));
	}

	let lo = 0;
	const countBelow = (x: number) => {
		let count = 0;
		let q = 1;
		for (let j = 0; j < k; j++) {
			const off = j > 0 ? e[j - 1]! ** 2 : 0;
			q = d[j]! - x - (j > 0 ? off / (q === 0 ? 1e-300 : q) : 0);
			if (q < 0) {
				count++;
			}
		}

		return count;
	};

	for (let iteration = 0; iteration < 200 && hi - lo > hi * 1e-15; iteration++) {
		const mid = (lo + hi) / 2;
		if (countBelow(mid) === k) {
			hi = mid;
		} else {
			lo = mid;
		}
	}

	return Math.sqrt((lo + hi) / 2);
}

/** Deterministic start vector (no Math.random: the same weight always gives the same figure). */
function startVector(n: number): Float32Array {
	const v = new Float32Array(n);
	let state = 0x9E_37_79_B9;
	for (let i = 0; i < n; i++) {
		state ^= state << 13;
		state ^= state >>> 17;
		state ^= state << 5;
		v[i] = ((state >>> 0) / 4_294_967_296) - 0.5;
	}

	normalize(v);
	return v;
}

/**
 * σ_max of a rows×cols row-major matrix by Golub–Kahan–Lanczos. `maxSteps` bounds the products
 * (two per step): 5–10 steps where a few directions dominate (trained weights), 25–30 for a
 * Gaussian-like spectrum.
 */
export async function spectralNorm(
	a: Float32Array,
	rows: number,
	cols: number,
	kernels: Pick<EngineKernels, 'matmul' | 'matvecT'>,
	options: {maxSteps?: number; tolerance?: number} = {},
): Promise<number> {
	const maxSteps = Math.min(options.maxSteps ?? 60, rows, cols);
	const tolerance = options.tolerance ?? 1e-6;
	if (maxSteps <= 0) {
		return 0;
	}

	const us: Float32Array[] = [];
	const vs: Float32Array[] = [startVector(cols)];
	const alpha: number[] = [];
	const beta: number[] = [];
	let previous = 0;
	let estimate = 0;
	for (let j = 0; j < maxSteps; j++) {
		const v = vs[j]!;
		// A·v as an n×1 matrix product: onnxruntime's MatMul with a 1-D right operand is 10–20× slower.
		const u = await kernels.matmul(a, rows, cols, v, 1);
		if (j > 0) {
			const uPrev = us[j - 1]!;
			const b = beta[j - 1]!;
			for (let i = 0; i < u.length; i++) {
				u[i]! -= b * uPrev[i]!;
			}
		}

		reorthogonalize(u, us);
		const alphaJ = normalize(u);
		alpha.push(alphaJ);
		us.push(u);
		estimate = bidiagonalSigmaMax(alpha, beta);
		if (!(alphaJ > 0)) {
			break;
		}

		const next = await kernels.matvecT(a, rows, cols, u);
		for (let i = 0; i < next.length; i++) {
			next[i]! -= alphaJ * v[i]!;
		}

		reorthogonalize(next, vs);
		const betaJ = normalize(next);
		if (j > 1 && Math.abs(estimate - previous) <= tolerance * estimate) {
			break;
		}

		previous = estimate;
		if (!(betaJ > estimate * 1e-10)) {
			// Invariant subspace found: the Ritz values are exact.
			break;
		}

		beta.push(betaJ);
		vs.push(next);
	}

	return estimate;
}

export function frobeniusNorm(a: Float32Array): number {
	// Indexed loop with two accumulators: several times faster than for…of on a typed array.
	let even = 0;
	let odd = 0;
	const n = a.length;
	let i = 0;
	for (; i + 1 < n; i += 2) {
		const x = a[i]!;
		const y = a[i + 1]!;
		even += x * x;
		odd += y * y;
	}

	if (i < n) {
		even += a[i]! * a[i]!;
	}

	return Math.sqrt(even + odd);
}

/** Squares of every 16-bit pattern of a dtype, so a sum of squares is one load per stored value. */
const squareTables = new Map<'F16' | 'BF16', Float64Array>();

function squareTable(dtype: 'F16' | 'BF16'): Float64Array {
	let table = squareTables.get(dtype);
	if (!table) {
		const patterns = new Uint16Array(65_536);
		for (let i = 0; i < patterns.length; i++) {
			patterns[i] = i;
		}

		const values = decodeToFloat32(new Uint8Array(patterns.buffer), dtype);
		table = new Float64Array(values.length);
		for (let i = 0; i < values.length; i++) {
			// Exact in float64: an F16/BF16 mantissa has at most 11 bits.
			table[i] = values[i]! * values[i]!;
		}

		squareTables.set(dtype, table);
	}

	return table;
}

/** Σx² (float64) of the values stored little-endian in `bytes`. */
export function sumOfSquares(bytes: Uint8Array, dtype: DType): number {
	if (bytes.byteOffset % 8 !== 0) {
		// Typed-array views need aligned offsets; the stream's own buffers always are.
		bytes = bytes.slice();
	}

	const size = dtypeSize[dtype];
	const count = Math.floor(bytes.byteLength / size);
	let even = 0;
	let odd = 0;
	if (dtype === 'F16' || dtype === 'BF16') {
		const table = squareTable(dtype);
		// Two values per 32-bit load (little-endian: low half first); faster than 16-bit loads.
		const pairs = new Uint32Array(bytes.buffer, bytes.byteOffset, count >>> 1);
		for (let i = 0; i < pairs.length; i++) {
			const word = pairs[i]!;
			even += table[word & 0xFF_FF]!;
			odd += table[word >>> 16]!;
		}

		if (count % 2 === 1) {
			even += table[bytes[(count - 1) * 2]! | (bytes[((count - 1) * 2) + 1]! << 8)]!;
		}

		return even + odd;
	}

	const values = dtype === 'F32'
		? new Float32Array(bytes.buffer, bytes.byteOffset, count)
		: (dtype === 'F64' ? new Float64Array(bytes.buffer, bytes.byteOffset, count) : decodeToFloat32(bytes.subarray(0, count * size), dtype));
	let i = 0;
	for (; i + 1 < values.length; i += 2) {
		even += values[i]! * values[i]!;
		odd += values[i + 1]! * values[i + 1]!;
	}

	if (i < values.length) {
		even += values[i]! * values[i]!;
	}

	return even + odd;
}

/** Read size of the Frobenius stream: a multiple of every element size, large enough to amortise a read call. */
const streamChunkBytes = 8 * 1024 * 1024;

async function readFully(handle: FileHandle, buffer: Uint8Array, length: number, position: number, filePath: string): Promise<void> {
	let filled = 0;
	while (filled < length) {
		let bytesRead: number;
		try {
			({bytesRead} = await handle.read(buffer, filled, length - filled, position + filled));
		} catch (error) {
			throw new LoraFileError(filePath, errnoReason(error));
		}

		if (bytesRead === 0) {
			throw new LoraFileError(filePath, `file ended at byte ${position + filled} while reading ${length} bytes at ${position} (truncated or being written)`);
		}

		filled += bytesRead;
	}
}

type StreamPiece = {slice: number; position: number; length: number; last: boolean};

/**
 * ‖W‖_F of each slice (in file order) by one forward pass over their byte ranges: the next piece
 * is read (on libuv's thread) while this one is summed, so the pass runs at the slower of read
 * and sum speed. Memory: two chunk buffers, whatever the checkpoint size.
 */
async function streamFrobenius(
	base: SafetensorsHeader,
	slices: ReadonlyArray<readonly [string, BaseSlice]>,
	ctx: JobContext,
	onSlice: (id: string, frobenius: number) => Promise<void>,
): Promise<void> {
	const pieces: StreamPiece[] = [];
	for (const [index, [, slice]] of slices.entries()) {
		const info = base.byName.get(slice.key)!;
		const rowBytes = slice.inDim * dtypeSize[info.dtype];
		const start = base.dataOffset + info.begin + ((slice.rows?.[0] ?? 0) * rowBytes);
		const length = slice.outDim * rowBytes;
		let offset = 0;
		do {
			const size = Math.min(streamChunkBytes, length - offset);
			pieces.push({slice: index, position: start + offset, length: size, last: offset + size >= length});
			offset += size;
		} while (offset < length);
	}

	const handle = await openForRead(base.path);
	const buffers = [new Uint8Array(streamChunkBytes), new Uint8Array(streamChunkBytes)] as const;
	// Settles to the error instead of rejecting: a read may fail while nothing awaits it yet.
	const readPiece = async (index: number): Promise<unknown> => {
		const piece = pieces[index]!;
		return readFully(handle, buffers[index % 2]!, piece.length, piece.position, base.path).then(() => undefined, (error: unknown) => error ?? new Error('read failed'));
	};

	let pending: Promise<unknown> | undefined;
	try {
		const size = (await handle.stat()).size;
		if (size !== base.sizeBytes) {
			throw new LoraFileError(base.path, `file changed since its header was read (${base.sizeBytes} → ${size} bytes)`);
		}

		let sum = 0;
		pending = pieces.length > 0 ? readPiece(0) : undefined;
		for (const [index, piece] of pieces.entries()) {
			const failure = await pending;
			pending = undefined;
			if (failure !== undefined) {
				throw failure;
			}

			await ctx.yield();
			pending = index + 1 < pieces.length ? readPiece(index + 1) : undefined;
			const [id, slice] = slices[piece.slice]!;
			sum += sumOfSquares(buffers[index % 2]!.subarray(0, piece.length), base.byName.get(slice.key)!.dtype);
			if (piece.last) {
				await onSlice(id, Math.sqrt(sum));
				sum = 0;
			}
		}
	} finally {
		// Never close the handle under a read still in flight.
		await pending;
		await handle.close().catch(() => undefined);
	}
}

async function baseNormsJob(params: BaseNormsParams, ctx: JobContext): Promise<BaseNormsResult> {
	const started = performance.now();
	const need = params.need ?? 'both';
	if (need !== 'both' && need !== 'frobenius') {
		throw new Error(`base-norms: need must be "frobenius" or "both" (got ${JSON.stringify(need)})`);
	}

	const lora = await readHeader(params.loraPath);
	const model = buildLoraModel(lora);
	const factorModules = model.modules.filter(m => m.algo === 'lora' && m.rank !== null);
	const base = await readHeader(params.basePath);
	const mapping = mapModulesToBase(baseMapModulesOf(factorModules), base.tensors);
	const cacheDir = params.cacheDir ?? defaultCacheDir();
	const cacheFile = cacheFileFor(cacheDir, base.path);
	const known = await readCache(cacheFile, base.path, base.sizeBytes, base.mtimeMs);
	const complete = (norm: CachedNorm | undefined) => norm !== undefined && (need === 'frobenius' || norm.spectral !== undefined);

	// Distinct slices still to compute, in file order so reads stream forward. Non-float weights
	// get no norm (the module stays unscored).
	const todo = new Map<string, BaseSlice>();
	for (const slice of mapping.targets.values()) {
		const id = sliceId(slice);
		if (!complete(known.get(id)) && !todo.has(id) && isFloatDType(base.byName.get(slice.key)!.dtype)) {
			todo.set(id, slice);
		}
	}

	const ordered = [...todo.entries()].sort(([, a], [, b]) => {
		const ia = base.byName.get(a.key)!;
		const ib = base.byName.get(b.key)!;
		return ia.begin - ib.begin || (a.rows?.[0] ?? 0) - (b.rows?.[0] ?? 0);
	});
	const sliceBytes = (slice: BaseSlice) => slice.outDim * slice.inDim * dtypeSize[base.byName.get(slice.key)!.dtype];
	const computed: NonNullable<BaseNormsResult['computed']> = {frobenius: 0, spectral: 0};
	let device = 'cached';
	let lastSave = performance.now();
	// A long first run keeps what it computed even if it is cancelled later.
	const saveNowAndThen = async () => {
		if (performance.now() - lastSave > 10_000) {
			lastSave = performance.now();
			await saveCache(cacheFile, base.path, base.sizeBytes, base.mtimeMs, known);
		}
	};

	if (ordered.length > 0 && need === 'frobenius') {
		device = 'cpu (plain JS)';
		let bytesDone = 0;
		let done = 0;
		await streamFrobenius(base, ordered, ctx, async (id, frobenius) => {
			known.set(id, {frobenius});
			computed.frobenius++;
			const slice = todo.get(id)!;
			bytesDone += sliceBytes(slice);
			ctx.progress(++done, ordered.length, slice.key, bytesDone);
			await saveNowAndThen();
		});
		await saveCache(cacheFile, base.path, base.sizeBytes, base.mtimeMs, known);
	} else if (ordered.length > 0) {
		const kernels = await getEngineKernels(ctx.device, ctx.log);
		device = kernels.backend === 'js' ? 'cpu (plain JS)' : kernels.device;
		const reader = await TensorReader.open(base);
		let bytesDone = 0;
		try {
			for (const [index, [id, slice]] of ordered.entries()) {
				await ctx.yield();
				const info = base.byName.get(slice.key)!;
				const rowBytes = slice.inDim * dtypeSize[info.dtype];
				const start = info.begin + ((slice.rows?.[0] ?? 0) * rowBytes);
				const raw = await reader.readDataRange(start, slice.outDim * rowBytes);
				const weights = decodeToFloat32(raw, info.dtype);
				const spectral = await spectralNorm(weights, slice.outDim, slice.inDim, kernels);
				computed.spectral++;
				// Only what is missing: a 'frobenius' run may have cached ‖W‖_F already.
				let frobenius = known.get(id)?.frobenius;
				if (frobenius === undefined) {
					frobenius = frobeniusNorm(weights);
					computed.frobenius++;
				}

				known.set(id, {frobenius, spectral});
				bytesDone += sliceBytes(slice);
				ctx.progress(index + 1, ordered.length, slice.key, bytesDone);
				await saveNowAndThen();
			}
		} finally {
			await reader.close();
		}

		await saveCache(cacheFile, base.path, base.sizeBytes, base.mtimeMs, known);
	}

	const norms: Record<string, BaseNorm> = {};
	for (const [name, slice] of mapping.targets) {
		const norm = known.get(sliceId(slice));
		if (norm) {
			norms[name] = {spectral: norm.spectral ?? Number.NaN, frobenius: norm.frobenius};
		}
	}

	let subspaceCached = true;
	if (params.subspace) {
		const {values, computed: count} = await subspaceValues(lora, base, mapping.targets, norms, cacheDir, ctx);
		computed.subspace = count;
		subspaceCached = count === 0;
		for (const [name, list] of values) {
			norms[name] = {...norms[name]!, subspace: list};
		}

		if (count > 0 && device === 'cached') {
			const kernels = await getEngineKernels(ctx.device, ctx.log);
			device = kernels.backend === 'js' ? 'cpu (plain JS)' : kernels.device;
		}
	}

	const unmappedReasons: Record<string, string> = {};
	for (const {name, reason} of mapping.unmapped) {
		unmappedReasons[name] = reason;
	}

	return {
		norms,
		unmapped: mapping.unmapped.map(u => u.name),
		unmappedReasons,
		seconds: (performance.now() - started) / 1000,
		cached: ordered.length === 0 && subspaceCached,
		computed,
		device,
	};
}

const subspaceCachePrefix = 'base-subspace\0';

function subspaceCacheKey(lora: SafetensorsHeader, base: SafetensorsHeader): string {
	return `${subspaceCachePrefix}${JSON.stringify([lora.path, lora.sizeBytes, lora.mtimeMs, base.path, base.sizeBytes, base.mtimeMs])}`;
}

/**
 * uᵢᵀ·W·vᵢ for every singular triplet of one module, with U = up·leftMap and Vt = rightMap·down
 * (see kernels/decompose.ts): d = diag(leftMapᵀ·(upᵀ·W·downᵀ)·rightMapᵀ). `weight` is the base
 * slice as stored (slice.outDim×slice.inDim), the transpose of the module's W when `transposed`.
 */
export async function subspaceDiagonal(
	factorization: ModuleFactorization,
	up: Float32Array,
	down: Float32Array,
	weight: Float32Array,
	transposed: boolean,
	kernels: Pick<EngineKernels, 'mulF32F64' | 'mulF64F32'>,
): Promise<Float64Array> {
	const {outDim, rank, inDim} = factorization;
	// wd = W·downᵀ (outDim×rank), float64 accumulation on the kernels.
	let wd: Float32Array;
	if (transposed) {
		// W = Pᵀ with P inDim×outDim: W·downᵀ = (down·P)ᵀ.
		const downP = await kernels.mulF64F32(Float64Array.from(down), rank, inDim, weight, outDim);
		wd = transposeInto(downP, rank, outDim, new Float32Array(rank * outDim));
	} else {
		wd = await kernels.mulF32F64(weight, outDim, inDim, transposeInto(down, rank, inDim, new Float64Array(rank * inDim)), rank);
	}

	return mapDiagonal(factorization, upTransposeTimes(up, wd, outDim, rank));
}

// The loops of subspaceDiagonal are sync functions of their own: inside the async function V8
// optimised them on stack once per call and threw the code away at the next await.

/** The transpose of a rows×cols matrix, written to `t` (float32 or float64). */
function transposeInto<T extends Float32Array | Float64Array>(m: Float32Array, rows: number, cols: number, t: T): T {
	for (let r = 0; r < rows; r++) {
		for (let c = 0; c < cols; c++) {
			t[(c * rows) + r] = m[(r * cols) + c]!;
		}
	}

	return t;
}

/** z = upᵀ·wd (rank×rank) in float64, for up and wd outDim×rank. */
function upTransposeTimes(up: Float32Array, wd: Float32Array, outDim: number, rank: number): Float64Array {
	const z = new Float64Array(rank * rank);
	for (let o = 0; o < outDim; o++) {
		for (let a = 0; a < rank; a++) {
			const value = up[(o * rank) + a]!;
			if (value === 0) {
				continue;
			}

			for (let b = 0; b < rank; b++) {
				z[(a * rank) + b]! += value * wd[(o * rank) + b]!;
			}
		}
	}

	return z;
}

/** dᵢ = leftMap[:, i]ᵀ·z·rightMap[i, :] for every singular value. */
function mapDiagonal(factorization: ModuleFactorization, z: Float64Array): Float64Array {
	const {rank} = factorization;
	const total = factorization.singularValues.length;
	const d = new Float64Array(total);
	for (let i = 0; i < total; i++) {
		let sum = 0;
		for (let a = 0; a < rank; a++) {
			const left = factorization.leftMap[(a * total) + i]!;
			if (left === 0) {
				continue;
			}

			let row = 0;
			for (let b = 0; b < rank; b++) {
				row += z[(a * rank) + b]! * factorization.rightMap[(i * rank) + b]!;
			}

			sum += left * row;
		}

		d[i] = sum;
	}

	return d;
}

/**
 * |uᵢᵀ·W·vᵢ| per mapped module that has a base norm (float weights), [] for modules with no
 * non-zero singular value. Reads the base slices in file order; `computed` is 0 on a cache hit.
 */
async function subspaceValues(
	lora: SafetensorsHeader,
	base: SafetensorsHeader,
	targets: ReadonlyMap<string, BaseSlice>,
	norms: Readonly<Record<string, BaseNorm>>,
	cacheDir: string,
	ctx: JobContext,
): Promise<{values: Map<string, number[]>; computed: number}> {
	const key = subspaceCacheKey(lora, base);
	const hit = ctx.cache.get(key) as Map<string, number[]> | undefined;
	if (hit) {
		return {values: hit, computed: 0};
	}

	const stored = await readSubspaceCache(cacheDir, lora, base, [...targets.keys()].filter(name => Object.hasOwn(norms, name)));
	if (stored) {
		rememberSubspace(ctx, key, stored);
		return {values: stored, computed: 0};
	}

	const decomposition = await decompositionOf(lora, ctx);
	const model = buildLoraModel(lora);
	const modules = new Map(model.modules.map(m => [m.name, m]));
	const values = new Map<string, number[]>();
	const todo: Array<[string, BaseSlice]> = [];
	for (const [name, slice] of targets) {
		if (!Object.hasOwn(norms, name)) {
			continue;
		}

		if (decomposition.factors.has(name) && modules.get(name)?.tensors['up'] !== undefined && modules.get(name)?.tensors['down'] !== undefined) {
			todo.push([name, slice]);
		} else {
			values.set(name, []);
		}
	}

	todo.sort(([, a], [, b]) => base.byName.get(a.key)!.begin - base.byName.get(b.key)!.begin || (a.rows?.[0] ?? 0) - (b.rows?.[0] ?? 0));
	if (todo.length > 0) {
		const kernels = await getEngineKernels(ctx.device, ctx.log);
		const baseReader = await TensorReader.open(base);
		const loraReader = await TensorReader.open(lora);
		let bytesDone = 0;
		let rawScratch = Buffer.alloc(0);
		let weightScratch = new Float32Array(0);
		try {
			for (const [index, [name, slice]] of todo.entries()) {
				await ctx.yield();
				const module = modules.get(name)!;
				const factorization = decomposition.factors.get(name)!;
				const info = base.byName.get(slice.key)!;
				const rowBytes = slice.inDim * dtypeSize[info.dtype];
				const start = info.begin + ((slice.rows?.[0] ?? 0) * rowBytes);
				// Base slices reach ~60 MB (SD conv, SDXL MLP): read and decode into buffers reused
				// across modules, not fresh zero-filled ones for each.
				const byteLength = slice.outDim * rowBytes;
				if (rawScratch.length < byteLength) {
					rawScratch = Buffer.allocUnsafe(byteLength);
				}

				const count = slice.outDim * slice.inDim;
				if (weightScratch.length < count) {
					weightScratch = new Float32Array(count);
				}

				const weight = weightScratch.subarray(0, count);
				decodeInto(await baseReader.readDataRange(start, byteLength, rawScratch), info.dtype, weight);
				const upKey = module.tensors['up']!;
				const downKey = module.tensors['down']!;
				const up = decodeToFloat32(await loraReader.readRaw(upKey), lora.byName.get(upKey)!.dtype);
				const down = decodeToFloat32(await loraReader.readRaw(downKey), lora.byName.get(downKey)!.dtype);
				const transposed = slice.transposed === true;
				if (up.length !== factorization.outDim * factorization.rank || down.length !== factorization.rank * factorization.inDim
					|| weight.length !== factorization.outDim * factorization.inDim) {
					// Shapes the factorisation does not describe: no values, so the module stays unscored.
					values.set(name, []);
					continue;
				}

				const d = await subspaceDiagonal(factorization, up, down, weight, transposed, kernels);
				values.set(name, Array.from(d, Math.abs));
				bytesDone += slice.outDim * rowBytes;
				ctx.progress(index + 1, todo.length, `subspace ${name}`, bytesDone);
			}
		} finally {
			await Promise.all([baseReader.close(), loraReader.close()]);
		}
	}

	rememberSubspace(ctx, key, values);
	await saveSubspaceCache(cacheDir, lora, base, values);
	return {values, computed: todo.length};
}

function rememberSubspace(ctx: JobContext, key: string, values: Map<string, number[]>): void {
	// At most a few LoRA/base pairs in memory (each a number per singular value of every module).
	const older = [...ctx.cache.keys()].filter(k => k.startsWith(subspaceCachePrefix));
	for (const stale of older.slice(0, Math.max(0, older.length - 3))) {
		ctx.cache.delete(stale);
	}

	ctx.cache.set(key, values);
}

async function saveCache(file: string, checkpoint: string, sizeBytes: number, mtimeMs: number, norms: ReadonlyMap<string, CachedNorm>): Promise<void> {
	const content: NormsCacheFile = {version: cacheVersion, path: path.resolve(checkpoint), sizeBytes, mtimeMs, norms: Object.fromEntries(norms)};
	await saveJsonCache(file, content);
}

registerJob('base-norms', baseNormsJob);
