// Fixtures for the dashboard tests, generated at test time into a temp folder: H3's realistic samples,
// a damaged file and a file with hostile metadata; independent float64 references for the norms; and
// an in-process stats engine (H3's computeStats with plain-JS kernels) standing in for the worker.
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {CancelledError} from '../../source/engine/protocol.js';
import type {StatsEngine} from '../../source/hooks/stats-engine.js';
import {loadLoraModel} from '../../source/lora/model.js';
import {readHeader, TensorReader} from '../../source/lora/safetensors.js';
import {writeSample, type SampleKind, type SampleOptions} from '../../source/lora/samples.js';
import {computeStats} from '../../source/lora/stats.js';
import type {DType} from '../../source/lora/types.js';
import {writeSafetensorsAtomic} from '../../source/lora/writer.js';

export async function tempFolder(prefix = 'lorascope-views-'): Promise<{dir: string; remove: () => Promise<void>}> {
	const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
	return {dir, remove: async () => rm(dir, {recursive: true, force: true})};
}

export async function sample(folder: string, file: string, kind: SampleKind, options: SampleOptions = {}): Promise<string> {
	const target = path.join(folder, file);
	await mkdir(path.dirname(target), {recursive: true});
	await writeSample(target, kind, options);
	return target;
}

/** A file whose header length points past its end: unreadable, with a one-line reason. */
export async function brokenFile(folder: string, file = 'broken.safetensors'): Promise<string> {
	const target = path.join(folder, file);
	const head = Buffer.alloc(8);
	head.writeBigUInt64LE(10_000_000n);
	await writeFile(target, Buffer.concat([head, Buffer.from('{"a":')]));
	return target;
}

/** Escape sequences a hostile file might carry in names, values and tags. */
export const hostileStrings = {
	title: '\u001B]0;pwned-title\u0007Evil\u001B[2J\u001B[H title',
	clipboard: 'x\u001B]52;c;cHduZWQ=\u0007y',
	color: '\u001B[31mred\u001B[0m and \u009B31mC1 red',
	cursor: 'up\u001B[5Aleft\u001B[10D bell\u0007 bidi\u202Eevil\u202C',
	link: '\u001B]8;;https://evil.example\u001B\\click\u001B]8;;\u001B\\',
};

/** A small kohya LoRA whose metadata (keys, values, tag names, dataset dirs) is full of escape sequences. */
export async function hostileFile(folder: string, file = 'hostile.safetensors'): Promise<string> {
	const target = path.join(folder, file);
	const rank = 2;
	const dim = 320;
	const up = new Float32Array(dim * rank).map((_, i) => Math.sin(i) * 0.01);
	const down = new Float32Array(rank * dim).map((_, i) => Math.cos(i) * 0.01);
	const name = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q';
	const f32 = 'F32' as DType;
	await writeSafetensorsAtomic(
		target,
		[
			{name: `${name}.alpha`, dtype: f32, shape: [], data: Buffer.from(new Float32Array([1]).buffer)},
			{name: `${name}.lora_down.weight`, dtype: f32, shape: [rank, dim], data: Buffer.from(down.buffer)},
			{name: `${name}.lora_up.weight`, dtype: f32, shape: [dim, rank], data: Buffer.from(up.buffer)},
		],
		{
			ss_network_module: 'networks.lora',
			ss_network_dim: '2',
			ss_network_alpha: '1.0',
			ss_output_name: hostileStrings.title,
			'modelspec.title': hostileStrings.title,
			ss_training_comment: `${hostileStrings.color} ${hostileStrings.cursor} ${hostileStrings.link}`,
			[`evil_key\u001B[2J${hostileStrings.clipboard}`]: hostileStrings.clipboard,
			ss_optimizer: `${hostileStrings.color}.Opt()`,
			ss_tag_frequency: JSON.stringify({[`1_dir\u001B]0;t\u0007`]: {[`tag\u001B[31m${hostileStrings.clipboard}`]: 3, [hostileStrings.cursor]: 2}}),
			ss_dataset_dirs: JSON.stringify({[`1_dir\u001B]0;t\u0007`]: {n_repeats: 1, img_count: 3}}),
		},
		{overwrite: true},
	);
	return target;
}

export type ModuleReference = {name: string; component: 'unet' | 'te'; squaredNorm: number};

/**
 * ‖scale·up·down‖²_F per kohya module, in float64, by a method of the test's own:
 * trace((upᵀup)(down·downᵀ)) over the r×r Grams; `dense` names modules to check by forming ΔW.
 */
export async function referenceNorms(file: string, dense: (name: string) => boolean = () => false): Promise<{modules: Map<string, ModuleReference>; unet: number; te: number; denseChecked: number}> {
	const header = await readHeader(file);
	const reader = await TensorReader.open(header);
	const modules = new Map<string, ModuleReference>();
	let denseChecked = 0;
	try {
		const prefixes = new Set(header.tensors.filter(t => t.name.endsWith('.lora_down.weight')).map(t => t.name.slice(0, -'.lora_down.weight'.length)));
		for (const prefix of prefixes) {
			const downInfo = header.byName.get(`${prefix}.lora_down.weight`)!;
			const upInfo = header.byName.get(`${prefix}.lora_up.weight`)!;
			const r = downInfo.shape[0]!;
			const inDim = downInfo.shape.slice(1).reduce((a, b) => a * b, 1);
			const outDim = upInfo.shape[0]!;
			const alphaInfo = header.byName.get(`${prefix}.alpha`);
			const alpha = alphaInfo ? (await reader.read(alphaInfo.name))[0]! : r;
			const scale = alpha / r;
			const down = Float64Array.from(await reader.read(downInfo.name));
			const up = Float64Array.from(await reader.read(upInfo.name));
			// Grams: G_u = upᵀup (r×r), G_d = down·downᵀ (r×r).
			const gu = new Float64Array(r * r);
			const gd = new Float64Array(r * r);
			for (let k = 0; k < r; k++) {
				for (let l = 0; l < r; l++) {
					let su = 0;
					for (let i = 0; i < outDim; i++) {
						su += up[i * r + k]! * up[i * r + l]!;
					}

					let sd = 0;
					for (let j = 0; j < inDim; j++) {
						sd += down[k * inDim + j]! * down[l * inDim + j]!;
					}

					gu[k * r + l] = su;
					gd[k * r + l] = sd;
				}
			}

			let squared = 0;
			for (let k = 0; k < r * r; k++) {
				squared += gu[k]! * gd[k]!;
			}

			squared *= scale * scale;
			if (dense(prefix)) {
				// Form ΔW row by row and sum its squares.
				let sum = 0;
				const row = new Float64Array(inDim);
				for (let i = 0; i < outDim; i++) {
					row.fill(0);
					for (let k = 0; k < r; k++) {
						const u = up[i * r + k]!;
						for (let j = 0; j < inDim; j++) {
							row[j]! += u * down[k * inDim + j]!;
						}
					}

					for (let j = 0; j < inDim; j++) {
						sum += (scale * row[j]!) ** 2;
					}
				}

				if (Math.abs(sum - squared) > 1e-9 * Math.max(1, sum)) {
					throw new Error(`reference disagrees with itself on ${prefix}: dense ${sum}, grams ${squared}`);
				}

				denseChecked++;
			}

			modules.set(prefix, {name: prefix, component: prefix.startsWith('lora_te') ? 'te' : 'unet', squaredNorm: squared});
		}
	} finally {
		await reader.close();
	}

	let unet = 0;
	let te = 0;
	for (const m of modules.values()) {
		if (m.component === 'te') {
			te += m.squaredNorm;
		} else {
			unet += m.squaredNorm;
		}
	}

	return {modules, unet: Math.sqrt(unet), te: Math.sqrt(te), denseChecked};
}

/** The stats engine in-process: H3's computeStats with the plain-JS kernels; jobs can be counted and cancelled. */
export function inProcessEngine(): StatsEngine & {started: string[]; cancelled: string[]} {
	let next = 1;
	const controllers = new Map<string, AbortController>();
	const started: string[] = [];
	const cancelled: string[] = [];
	return {
		started,
		cancelled,
		runStats(file, onProgress) {
			const jobId = `stats-${next++}`;
			const controller = new AbortController();
			controllers.set(jobId, controller);
			started.push(file);
			const promise = (async () => {
				const header = await readHeader(file);
				const reader = await TensorReader.open(header);
				let model;
				try {
					model = await loadLoraModel(header, async name => reader.read(name));
				} finally {
					await reader.close();
				}

				return computeStats(header, model, {signal: controller.signal, onProgress: p => onProgress(p.done, p.total)});
			})().catch((error: unknown) => {
				// As the real client does: a cancelled job rejects with CancelledError.
				throw controller.signal.aborted ? new CancelledError() : error;
			});
			return {jobId, promise};
		},
		cancel(jobId) {
			cancelled.push(jobId);
			controllers.get(jobId)?.abort();
		},
		onEvent(listener) {
			queueMicrotask(() => listener({type: 'ready', device: 'cpu', detail: 'in-process test engine'}));
			return () => undefined;
		},
		async close() {
			for (const controller of controllers.values()) {
				controller.abort();
			}
		},
	};
}

/** Parses a number as the dashboard prints it (4 significant digits) and checks it against a reference. */
export function assertClose(shown: string | undefined, reference: number, label: string, relative = 1e-3): void {
	const value = Number(shown);
	if (shown === undefined || !Number.isFinite(value) || Math.abs(value - reference) > relative * Math.abs(reference)) {
		throw new Error(`${label}: shown ${shown}, reference ${reference}`);
	}
}
