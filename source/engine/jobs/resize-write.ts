// Job 'resize-write': plan a resize from the (cached) decomposition and write the output file
// atomically. The plan is recomputed here from the method rather than sent by the client: the
// planner is deterministic and fast, and the file written is then exactly what the job reports.
// A cancelled job leaves no file under the target name (writer.ts: temp file + link/rename).
import {createHash} from 'node:crypto';
import {readFileSync} from 'node:fs';
import {access, mkdir, stat, unlink} from 'node:fs/promises';
import path from 'node:path';
import {decodeToFloat32} from '../../lora/dtypes.js';
import {computeFileHashes, sshsHashesFor} from '../../lora/hashes.js';
import {loadLoraModel} from '../../lora/model.js';
import {assembleOutput, copiedBytesOf, resizedMetadata, type WrittenModule} from '../../lora/resize-output.js';
import {outputPath, planResize, preparePlanInput, type BaseNorm, type ResizeMethod, type ResizePlan} from '../../lora/resize-plan.js';
import {readHeader, TensorReader} from '../../lora/safetensors.js';
import type {LoraModel, ModuleSpectrum, SafetensorsHeader} from '../../lora/types.js';
import {TargetExistsError, writeSafetensorsAtomic} from '../../lora/writer.js';
import type {JobContext} from '../job-context.js';
import {getEngineKernels} from '../kernels/index.js';
import {moduleVectors} from '../kernels/decompose.js';
import {registerJob} from '../registry.js';
import {decompositionOf} from './decompose.js';

export type ResizeWriteParams = {
	path: string;
	method: ResizeMethod;
	/** σ_max / ‖W‖_F (and |uᵢᵀWvᵢ|) of the base weights per module (job 'base-norms'), for ckpt recipe terms. */
	baseNorms?: Record<string, BaseNorm>;
	/** The checkpoint baseNorms came from: named in the output's `lorascope_resize` record. */
	basePath?: string;
	/** Target file; default `<name>_<method>.safetensors` in outDir or next to the source. */
	outPath?: string;
	outDir?: string;
	dtype?: 'F32' | 'F16' | 'BF16';
	overwrite?: boolean;
};

export type ResizeWriteResult = {
	outPath: string;
	method: string;
	modules: Array<Pick<WrittenModule, 'name' | 'rankBefore' | 'rankAfter' | 'alphaAfter' | 'froRetained'>>;
	totals: ResizePlan['totals'];
	threshold: number | null;
	removed: string[];
	copied: string[];
	unscored: string[];
	/** One line each: DoRA approximations, modules copied unchanged, modules with no base weight. */
	notes: string[];
	sizes: {sourceBytes: number; outputBytes: number; estimatedBytes: number; compression: number};
	device: string;
	seconds: number;
};

declare module '../protocol.js' {
	interface JobKinds {
		'resize-write': {params: ResizeWriteParams; result: ResizeWriteResult};
	}
}

let cachedVersion: string | undefined;

/** The package version (source and build both sit three levels below the package root). */
export function toolVersion(): string {
	if (cachedVersion === undefined) {
		try {
			const packageJson = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {version?: unknown};
			cachedVersion = typeof packageJson.version === 'string' ? packageJson.version : 'unknown';
		} catch {
			cachedVersion = 'unknown';
		}
	}

	return cachedVersion;
}

async function exists(file: string): Promise<boolean> {
	try {
		await access(file);
		return true;
	} catch {
		return false;
	}
}

/**
 * Spectra with the scale of the model read with its alpha values. Guards against a decomposition
 * built from a model whose alpha tensors were not read (scale 1): the singular values of
 * scale·ΔW scale with it. Returns the factor per module by which values were multiplied.
 */
function withModelScales(spectra: readonly ModuleSpectrum[], model: LoraModel): {spectra: ModuleSpectrum[]; factors: Map<string, number>} {
	const byName = new Map(model.modules.map(m => [m.name, m]));
	const factors = new Map<string, number>();
	const out = spectra.map(spectrum => {
		const module = byName.get(spectrum.name);
		if (!module || !spectrum.resizable || spectrum.scale === 0 || Math.abs(module.scale - spectrum.scale) <= 1e-12 * Math.abs(module.scale)) {
			return spectrum;
		}

		const factor = Math.abs(module.scale / spectrum.scale);
		factors.set(spectrum.name, factor);
		return {...spectrum, scale: module.scale, alpha: module.alpha, singularValues: spectrum.singularValues.map(v => v * factor)};
	});
	return {spectra: out, factors};
}

/**
 * The model with the scale loaders apply: a kohya module without an `alpha` tensor is applied at
 * scale 1 by kohya's own resize_lora, A1111 and ComfyUI alike (none of them reads
 * `ss_network_alpha`), so the output preserves that update, not the one the metadata implies.
 */
export function loaderScales(model: LoraModel): LoraModel {
	return {
		...model,
		modules: model.modules.map(m => (m.alphaSource === 'metadata' || m.alphaSource === 'conv-metadata') && m.rank !== null
			? {...m, scale: 1, alpha: m.rank, alphaSource: 'default' as const}
			: m),
	};
}

function resultNotes(plan: ResizePlan, model: LoraModel): string[] {
	const notes: string[] = [];
	const dora = model.modules.filter(m => m.hasDora && plan.modules.some(p => p.name === m.name && p.action !== 'copy')).length;
	if (dora > 0) {
		notes.push(`${dora} DoRA modules: dora_scale copied unchanged, so their result is approximate`);
	}

	if (plan.copied.length > 0) {
		const reasons = new Map<string, number>();
		for (const module of plan.modules.filter(m => m.action === 'copy')) {
			const reason = module.note ?? 'not resizable: copied unchanged';
			reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
		}

		for (const [reason, count] of reasons) {
			notes.push(`${count} modules: ${reason}`);
		}
	}

	if (plan.unscored.length > 0) {
		notes.push(`${plan.unscored.length} modules have no base weight and kept their rank`);
	}

	return notes;
}

function describeCopied(spectra: readonly ModuleSpectrum[]): string {
	const algos = [...new Set(spectra.filter(s => !s.resizable).map(s => s.algo))];
	return algos.length === 0 ? 'not resizable' : algos.join('/');
}

/** Data areas up to this size are read whole (outputs are smaller still, and are built in memory). */
const maxInMemoryBytes = 2 * 1024 * 1024 * 1024;

async function readDataArea(header: SafetensorsHeader, reader: TensorReader, ctx: JobContext): Promise<{bytes: Buffer; sha256: string} | null> {
	const length = header.sizeBytes - header.dataOffset;
	if (length > maxInMemoryBytes) {
		return null;
	}

	const bytes = Buffer.allocUnsafe(length);
	const hash = createHash('sha256');
	const chunk = 16 * 1024 * 1024;
	for (let offset = 0; offset < length; offset += chunk) {
		// Read straight into place: a copy of every byte costs more than the hash.
		const part = await reader.readDataRange(offset, Math.min(chunk, length - offset), bytes.subarray(offset));
		hash.update(part);
		await ctx.yield();
	}

	return {bytes, sha256: hash.digest('hex')};
}

async function resizeWriteJob(params: ResizeWriteParams, ctx: JobContext): Promise<ResizeWriteResult> {
	const started = performance.now();
	const header = await readHeader(params.path);
	const target = params.outPath ?? outputPath(header.path, params.method, params.outDir);
	if (path.resolve(target) === path.resolve(header.path)) {
		throw new Error(`${path.basename(target)}: refusing to write over the source file`);
	}

	if (!params.overwrite && await exists(target)) {
		throw new TargetExistsError(target);
	}

	const reader = await TensorReader.open(header);
	try {
		// One sequential pass over the data area gives the source hash for the record and every
		// tensor the output needs, instead of a positioned read per tensor and a second pass to hash.
		const data = await readDataArea(header, reader, ctx);
		const readRaw = data
			? async (key: string) => {
				const info = header.byName.get(key)!;
				return data.bytes.subarray(info.begin, info.end);
			}
			: async (key: string) => reader.readRaw(key);
		const read = async (key: string) => decodeToFloat32(await readRaw(key), header.byName.get(key)!.dtype);
		const model = loaderScales(await loadLoraModel(header, read));
		const decomposition = await decompositionOf(header, ctx);
		const {spectra, factors: scaleFixes} = withModelScales(decomposition.summary.modules, model);
		const plan = planResize(
			preparePlanInput(spectra, {
				fileBytes: header.sizeBytes,
				copiedBytes: copiedBytesOf(header, model, spectra),
				metadataBytes: JSON.stringify(header.metadata).length + 600,
			}),
			params.method,
			{dtype: params.dtype, base: params.baseNorms, keepAtLeastOne: model.modules.filter(m => m.hasDora).map(m => m.name)},
		);
		if (plan.totals.resized + plan.totals.kept + plan.totals.removed === 0) {
			throw new Error(`nothing to resize: ${plan.totals.copied === 0 ? 'no LoRA modules' : `all ${plan.totals.copied} modules are ${describeCopied(spectra)} and would be copied unchanged`}`);
		}

		const kernels = await getEngineKernels(ctx.device, ctx.log);
		const device = kernels.backend === 'js' ? 'cpu (plain JS)' : kernels.device;
		const masks = new Map(plan.modules.filter(m => m.keptIndices).map(m => [m.name, m.keptIndices!]));
		const assembled = await assembleOutput(header, model, plan, {
			readRaw,
			async factors(module, k) {
				const factorization = decomposition.factors.get(module.name);
				if (!factorization) {
					throw new Error(`no decomposition for ${module.name}`);
				}

				// Raw tensors: the kernels cast F16 themselves, faster than decoding in JS.
				const upKey = module.tensors['up']!;
				const downKey = module.tensors['down']!;
				const up = {dtype: header.byName.get(upKey)!.dtype, bytes: await readRaw(upKey)};
				const down = {dtype: header.byName.get(downKey)!.dtype, bytes: await readRaw(downKey)};
				// A subspace recipe may keep triplets out of S order (elias' mask): exactly those.
				const mask = masks.get(module.name);
				const {u, vt} = await moduleVectors(factorization, up, down, kernels, mask ?? k);
				const fix = scaleFixes.get(module.name) ?? 1;
				const singularValues = mask
					? mask.map(j => factorization.singularValues[j]! * fix)
					: Array.from(factorization.singularValues.subarray(0, k), v => v * fix);
				await ctx.yield();
				return {u, vt, singularValues};
			},
			signal: ctx.signal,
			onModule(done, total, name) {
				ctx.progress(done, total, `building ${name}`);
			},
		}, {dtype: params.dtype, rescale: params.method.method === 'recipe' ? params.method.rescale : undefined});

		const sourceSha256 = data?.sha256 ?? (await computeFileHashes(header.path, {signal: ctx.signal})).dataSha256;
		const metadata = resizedMetadata(header.metadata, model, plan, assembled, {
			method: params.method,
			toolVersion: toolVersion(),
			sourceSha256,
			sourceFile: path.basename(header.path),
			dtype: params.dtype ?? null,
			threshold: plan.threshold,
			...(params.basePath === undefined ? {} : {base: {file: path.basename(params.basePath), sizeBytes: await stat(params.basePath).then(s => s.size, () => null), unscored: plan.unscored.length}}),
		});
		const hashes = await sshsHashesFor(assembled.tensors, metadata);
		metadata['sshs_model_hash'] = hashes.modelHash;
		metadata['sshs_legacy_hash'] = hashes.legacyHash;
		await mkdir(path.dirname(target), {recursive: true});
		await writeSafetensorsAtomic(target, assembled.tensors, metadata, {
			overwrite: params.overwrite,
			signal: ctx.signal,
			onProgress({done, total}) {
				ctx.progress(done, total, 'writing', done);
			},
		});
		if (ctx.signal.aborted) {
			// Cancelled between the last chunk and the rename: the user asked for no file.
			await unlink(target).catch(() => undefined);
			await ctx.yield();
		}

		const {size} = await stat(target);
		return {
			outPath: target,
			method: plan.description,
			modules: assembled.modules.map(({name, rankBefore, rankAfter, alphaAfter, froRetained}) => ({name, rankBefore, rankAfter, alphaAfter, froRetained})),
			totals: plan.totals,
			threshold: plan.threshold,
			removed: plan.removed,
			copied: plan.copied,
			unscored: plan.unscored,
			notes: resultNotes(plan, model),
			sizes: {sourceBytes: header.sizeBytes, outputBytes: size, estimatedBytes: plan.sizes.estimatedBytes, compression: header.sizeBytes / Math.max(1, size)},
			device,
			seconds: (performance.now() - started) / 1000,
		};
	} finally {
		await reader.close();
	}
}

registerJob('resize-write', resizeWriteJob);
