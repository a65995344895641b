// The elias-gaeros `subspace` recipe term: |uᵢᵀ·W_base·vᵢ| per singular triplet (job 'base-norms'
// with subspace: true) and the ranks planResize / `lorascope resize` keep with it, against float64
// references built here. The fixture's LoRA modules are up = U·diag(s), down = Vᵀ (alpha = rank,
// so scale 1) with orthonormal U, V generated here: their singular triplets are known exactly. Each
// base weight is W = U·diag(t)·Vᵀ + (I − UUᵀ)·R, so uⱼᵀ·W·vⱼ = tⱼ while W stays full rank.
import assert from 'node:assert/strict';
import {mkdtemp, readdir, readFile, rm, utimes, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {after, before, test} from 'node:test';
import type {JobContext} from '../source/engine/job-context.js';
import type {BaseNormsParams, BaseNormsResult} from '../source/engine/jobs/base-norms.js';
import {disposeEngineKernels} from '../source/engine/kernels/index.js';
import {CancelledError, type EngineEvent} from '../source/engine/protocol.js';
import {getJobHandler} from '../source/engine/registry.js';
import {EngineServer} from '../source/engine/server.js';
import {decodeToFloat32, encodeFromFloat32} from '../source/lora/dtypes.js';
import {parseRecipe, planResize, ResizeMethodError, type BaseNorms} from '../source/lora/resize-plan.js';
import {readHeader, TensorReader} from '../source/lora/safetensors.js';
import type {DecompositionSummary} from '../source/lora/types.js';
import {writeSafetensorsAtomic, type TensorToWrite} from '../source/lora/writer.js';
import '../source/engine/jobs/index.js';
import {orthonormal, rng} from './helpers/random.js';
import {runCli, type CliResult} from './helpers/cli.js';

const n = 32;
const rank = 4;
let folder: string;

before(async () => {
	folder = await mkdtemp(path.join(os.tmpdir(), 'lorascope-subspace-'));
});

after(async () => {
	await disposeEngineKernels();
	await rm(folder, {recursive: true, force: true});
});

type Placement = 'plain' | 'fused' | 'transposed' | 'unmapped';

type ModuleSpec = {name: string; s: number[]; t: number[]; placement: Placement; baseKey: string};

/**
 * Scores log10 s − log10 t (subspace=1) against thr = 0.8, by design:
 *   to_q  [1.40, 0.70, 0.30, −0.13] → 1 kept (the first);
 *   to_k  [0.48, 1.18, 1.00, 0.70]  → 2 kept, indices 1 and 2 (not the first two);
 *   to_v  [1.30, 1.18, 1.00, 0.60]  → 3 kept;
 *   te2 k_proj (rows 32..64 of a fused in_proj_weight) [1.18, 0.48, 1.00, 0.30] → indices 0, 2;
 *   te2 text_projection (stored transposed) [0.70, 1.30, 0.70, 1.10] → indices 1, 3;
 *   attn2 to_q: no base weight → keeps its 4.
 */
const specs: ModuleSpec[] = [
	{name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q', s: [50, 20, 8, 3], t: [2, 4, 4, 4], placement: 'plain', baseKey: 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight'},
	{name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k', s: [60, 30, 20, 10], t: [20, 2, 2, 2], placement: 'plain', baseKey: 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_k.weight'},
	{name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_v', s: [40, 30, 20, 12], t: [2, 2, 2, 3], placement: 'plain', baseKey: 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_v.weight'},
	{name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_q', s: [40, 30, 20, 12], t: [2, 2, 2, 3], placement: 'unmapped', baseKey: ''},
	{name: 'lora_te2_text_model_encoder_layers_0_self_attn_k_proj', s: [45, 30, 20, 6], t: [3, 10, 2, 3], placement: 'fused', baseKey: 'conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight'},
	{name: 'lora_te2_text_projection', s: [50, 40, 25, 19], t: [10, 2, 5, 1.5], placement: 'transposed', baseKey: 'conditioner.embedders.1.model.text_projection'},
];

type Reference = {
	name: string;
	s: number[];
	u: Float64Array[];
	v: Float64Array[];
	/** uⱼᵀ·W·vⱼ from the stored (float32) base weight, in float64; null when unmapped. */
	d: number[] | null;
	/** ‖W‖_F of the stored base weight. */
	frobenius: number;
};

type Fixture = {lora: string; base: string; refs: Reference[]; dir: string};

let fixturePromise: Promise<Fixture> | undefined;

async function buildFixture(): Promise<Fixture> {
	const dir = await mkdtemp(path.join(folder, 'fixture-'));
	const random = rng(42);
	const loraTensors: TensorToWrite[] = [];
	const baseTensors: TensorToWrite[] = [];
	const refs: Reference[] = [];
	for (const spec of specs) {
		const u = orthonormal(random, n, rank);
		const v = orthonormal(random, n, rank);
		const up = new Float32Array(n * rank);
		const down = new Float32Array(rank * n);
		for (let j = 0; j < rank; j++) {
			for (let i = 0; i < n; i++) {
				up[(i * rank) + j] = u[j]![i]! * spec.s[j]!;
				down[(j * n) + i] = v[j]![i]!;
			}
		}

		loraTensors.push(
			{name: `${spec.name}.alpha`, dtype: 'F32', shape: [], data: encodeFromFloat32(Float32Array.of(rank), 'F32')},
			{name: `${spec.name}.lora_down.weight`, dtype: 'F32', shape: [rank, n], data: encodeFromFloat32(down, 'F32')},
			{name: `${spec.name}.lora_up.weight`, dtype: 'F32', shape: [n, rank], data: encodeFromFloat32(up, 'F32')},
		);
		if (spec.placement === 'unmapped') {
			refs.push({name: spec.name, s: spec.s, u, v, d: null, frobenius: Number.NaN});
			continue;
		}

		// W = U·diag(t)·Vᵀ + (I − UUᵀ)·R (LoRA orientation, n×n).
		const r = Float64Array.from({length: n * n}, () => random() - 0.5);
		const w = new Float64Array(n * n);
		for (let o = 0; o < n; o++) {
			for (let c = 0; c < n; c++) {
				let sum = r[(o * n) + c]!;
				for (let j = 0; j < rank; j++) {
					let projection = 0;
					for (let p = 0; p < n; p++) {
						projection += u[j]![p]! * r[(p * n) + c]!;
					}

					sum += (spec.t[j]! * v[j]![c]! - projection) * u[j]![o]!;
				}

				w[(o * n) + c] = sum;
			}
		}

		const stored = Float32Array.from(w);
		let data: Float32Array;
		let shape: number[];
		if (spec.placement === 'plain') {
			data = stored;
			shape = [n, n];
		} else if (spec.placement === 'transposed') {
			data = new Float32Array(n * n);
			for (let o = 0; o < n; o++) {
				for (let c = 0; c < n; c++) {
					data[(c * n) + o] = stored[(o * n) + c]!;
				}
			}

			shape = [n, n];
		} else {
			// Fused q, k, v rows: this module is k, rows n..2n.
			data = Float32Array.from({length: 3 * n * n}, () => (random() - 0.5) * 50);
			data.set(stored, n * n);
			shape = [3 * n, n];
		}

		baseTensors.push({name: spec.baseKey, dtype: 'F32', shape, data: encodeFromFloat32(data, 'F32')});
		const d = spec.t.map((_, j) => {
			let sum = 0;
			for (let o = 0; o < n; o++) {
				for (let c = 0; c < n; c++) {
					sum += u[j]![o]! * stored[(o * n) + c]! * v[j]![c]!;
				}
			}

			return sum;
		});
		refs.push({name: spec.name, s: spec.s, u, v, d, frobenius: Math.hypot(...stored)});
	}

	const lora = path.join(dir, 'lora.safetensors');
	const base = path.join(dir, 'base.safetensors');
	await writeSafetensorsAtomic(lora, loraTensors, {ss_network_module: 'networks.lora'});
	await writeSafetensorsAtomic(base, baseTensors, undefined);
	return {lora, base, refs, dir};
}

async function fixture(): Promise<Fixture> {
	fixturePromise ??= buildFixture();
	return fixturePromise;
}

/** Kept indices by the recipe score, from the references (null: unscored, keeps all). */
function expectedKept(ref: Reference, weights: {subspace: number; fro_ckpt: number}, thr: number): number[] | null {
	if (!ref.d) {
		return null;
	}

	const kept: number[] = [];
	for (const [j, s] of ref.s.entries()) {
		const score = Math.log10(s) - (weights.subspace * Math.log10(Math.abs(ref.d[j]!))) - (weights.fro_ckpt * Math.log10(ref.frobenius));
		// The fixture leaves wide margins, so float rounding in the engine cannot flip a decision.
		assert.ok(Math.abs(score - thr) > 0.02, `${ref.name}[${j}]: score ${score} too close to thr ${thr}`);
		if (score > thr) {
			kept.push(j);
		}
	}

	return kept;
}

function runServerJobs(jobs: Array<{kind: 'base-norms' | 'decompose'; params: unknown}>): Promise<{results: unknown[]; events: EngineEvent[]}> {
	const events: EngineEvent[] = [];
	const server = new EngineServer(event => events.push(event), {resolveDevice: () => ({device: 'cpu', detail: 'cpu (test)'})});
	return (async () => {
		const results: unknown[] = [];
		for (const [index, job] of jobs.entries()) {
			const jobId = `job-${index}`;
			server.handle({type: 'run', jobId, kind: job.kind, params: job.params});
			await server.idle();
			const outcome = events.find(event => (event.type === 'result' || event.type === 'error' || event.type === 'cancelled') && event.jobId === jobId);
			assert.equal(outcome?.type, 'result', JSON.stringify(outcome));
			results.push((outcome as Extract<EngineEvent, {type: 'result'}>).result);
		}

		return {results, events};
	})();
}

let engineResults: Promise<{norms: BaseNormsResult; summary: DecompositionSummary; events: EngineEvent[]}> | undefined;

async function engine() {
	engineResults ??= (async () => {
		const {lora, base, dir} = await fixture();
		const params: BaseNormsParams = {basePath: base, loraPath: lora, cacheDir: path.join(dir, 'cache'), need: 'frobenius', subspace: true};
		const {results, events} = await runServerJobs([{kind: 'base-norms', params}, {kind: 'decompose', params: {path: lora}}]);
		return {norms: results[0] as BaseNormsResult, summary: results[1] as DecompositionSummary, events};
	})();
	return engineResults;
}

test('base-norms subspace: |uᵢᵀ·W·vᵢ| per triplet (plain, fused q/k/v rows, transposed text_projection), progress events', async () => {
	const {refs} = await fixture();
	const {norms, events} = await engine();
	assert.deepEqual(norms.unmapped, ['lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_q']);
	for (const ref of refs) {
		const norm = norms.norms[ref.name];
		if (!ref.d) {
			assert.equal(norm, undefined, ref.name);
			continue;
		}

		assert.ok(norm?.subspace, `${ref.name}: no subspace values`);
		assert.equal(norm.subspace.length, rank, ref.name);
		for (const [j, expected] of ref.d.entries()) {
			// The signs of singular vectors are arbitrary: compare magnitudes.
			const got = norm.subspace[j]!;
			assert.ok(Math.abs(got - Math.abs(expected)) <= 1e-5 * Math.abs(expected), `${ref.name}[${j}]: ${got} vs ${expected}`);
		}

		assert.ok(Math.abs(norm.frobenius - ref.frobenius) <= 1e-9 * ref.frobenius, ref.name);
	}

	// The fixture's designed values really differ per triplet (a transposed or wrongly sliced W would not give them).
	assert.ok(Math.abs(refs[1]!.d![0]! - 20) < 1e-4 && Math.abs(refs[5]!.d![3]! - 1.5) < 1e-4, 'fixture: uᵢᵀ·W·vᵢ = tᵢ');
	const labels = events.filter((event): event is Extract<EngineEvent, {type: 'progress'}> => event.type === 'progress' && event.jobId === 'job-0').map(event => event.label ?? '');
	assert.ok(labels.some(label => label.startsWith('subspace ')), labels.join(', '));
});

test('planResize subspace=1: ranks and kept indices from the formula; unmapped modules keep their rank', async () => {
	const {refs} = await fixture();
	const {norms, summary} = await engine();
	const thr = 0.8;
	const plan = planResize(summary.modules, parseRecipe(`subspace=1,thr=${thr}`), {base: norms.norms});
	const byName = new Map(plan.modules.map(m => [m.name, m]));
	const ranks: number[] = [];
	let outOfOrder = 0;
	for (const ref of refs) {
		const planned = byName.get(ref.name)!;
		const kept = expectedKept(ref, {subspace: 1, fro_ckpt: 0}, thr);
		if (kept === null) {
			assert.equal(planned.rankAfter, rank, ref.name);
			assert.ok(plan.unscored.includes(ref.name), ref.name);
			continue;
		}

		assert.equal(planned.rankAfter, kept.length, ref.name);
		ranks.push(kept.length);
		const isPrefix = kept.every((j, index) => j === index);
		assert.deepEqual(planned.keptIndices ?? kept.map((_, index) => index), kept, ref.name);
		assert.equal(planned.keptIndices === undefined, isPrefix, ref.name);
		if (!isPrefix) {
			outOfOrder++;
			const keptSq = kept.reduce((sum, j) => sum + (ref.s[j]! ** 2), 0);
			const froRetained = Math.sqrt(keptSq / ref.s.reduce((sum, s) => sum + (s ** 2), 0));
			assert.ok(Math.abs(planned.froRetained - froRetained) < 1e-6, `${ref.name}: froRetained ${planned.froRetained} vs ${froRetained}`);
		}
	}

	assert.deepEqual(ranks, [1, 2, 3, 2, 2]);
	assert.equal(outOfOrder, 3);
	assert.deepEqual(plan.unscored, ['lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_q']);
});

test('planResize subspace=0.5,fro_ckpt=0.5 and size=: ranks from the formula', async () => {
	const {refs} = await fixture();
	const {norms, summary} = await engine();
	const thr = 0.55;
	const plan = planResize(summary.modules, parseRecipe(`subspace=0.5,fro_ckpt=0.5,thr=${thr}`), {base: norms.norms});
	const expected = refs.map(ref => expectedKept(ref, {subspace: 0.5, fro_ckpt: 0.5}, thr)?.length ?? rank);
	assert.deepEqual(plan.modules.map(m => m.rankAfter), expected);
	assert.deepEqual(expected, [1, 1, 3, 4, 2, 3]);
	// Different ranks per module, some but not all values dropped.
	assert.ok(new Set(expected).size >= 3, expected.join(','));

	// size=: elias' greedy rule over the same scores. Each value costs 4·(32 + 32) bytes (F32); the
	// unscored module's 4 come off first, leaving 7 values: the 7th best score, log10(19/1.5) (the
	// text projection's last value, unique and 0.07 from its neighbours), becomes the threshold
	// and the 6 scores above it are kept.
	const sized = planResize(summary.modules, parseRecipe(`subspace=1,size=${11 / 4096}`), {base: norms.norms});
	const scores = refs.filter(ref => ref.d).flatMap(ref => ref.s.map((s, j) => Math.log10(s) - Math.log10(Math.abs(ref.d![j]!)))).sort((a, b) => b - a);
	assert.ok(Math.abs(scores[6]! - Math.log10(19 / 1.5)) < 1e-4 && scores[5]! - scores[6]! > 0.05 && scores[6]! - scores[7]! > 0.05, scores.join(','));
	assert.ok(Math.abs(sized.threshold! - Math.log10(19 / 1.5)) < 1e-4, `threshold ${sized.threshold}`);
	assert.equal(sized.totals.rankAfter, 6 + rank);
});

test('subspace recipes need subspace values: a clear error without them', async () => {
	const {norms, summary} = await engine();
	const withoutSubspace: BaseNorms = Object.fromEntries(Object.entries(norms.norms).map(([name, {spectral, frobenius}]) => [name, {spectral, frobenius}]));
	assert.throws(() => planResize(summary.modules, parseRecipe('subspace=1,thr=0'), {base: withoutSubspace}), ResizeMethodError);
	assert.throws(() => planResize(summary.modules, parseRecipe('subspace=1,thr=0')), /need the base checkpoint/);
});

test('base-norms subspace is cancellable and recomputes cleanly afterwards', async () => {
	const {lora, base, dir, refs} = await fixture();
	const controller = new AbortController();
	let yields = 0;
	const ctx: JobContext = {
		jobId: 'cancel',
		signal: controller.signal,
		progress() {
			// Not shown.
		},
		log() {
			// Not shown.
		},
		async yield() {
			if (++yields > 3) {
				throw new CancelledError();
			}
		},
		device: 'cpu',
		cache: new Map(),
	};
	const params: BaseNormsParams = {basePath: base, loraPath: lora, cacheDir: path.join(dir, 'cache-cancel'), need: 'frobenius', subspace: true};
	const handler = getJobHandler('base-norms')!;
	await assert.rejects(handler(params, ctx), CancelledError);
	ctx.yield = async () => undefined;
	const result = await handler(params, ctx) as BaseNormsResult;
	assert.equal(result.computed?.subspace, 5);
	assert.ok(Math.abs(result.norms[refs[1]!.name]!.subspace![0]! - 20) < 1e-3, 'after a cancelled run');
	// Second run: from the in-memory cache.
	const again = await handler(params, ctx) as BaseNormsResult;
	assert.equal(again.computed?.subspace, 0);
	assert.deepEqual(again.norms[refs[1]!.name]!.subspace, result.norms[refs[1]!.name]!.subspace);
});

function freshContext(): JobContext {
	return {
		jobId: 'disk',
		signal: new AbortController().signal,
		progress() {
			// Not shown.
		},
		log() {
			// Not shown.
		},
		async yield() {
			// Never cancelled.
		},
		device: 'cpu',
		cache: new Map(),
	};
}

test('base-norms subspace values are cached on disk per LoRA/base pair, and recomputed when either file changes or the cache is damaged', async () => {
	const {lora, base, dir, refs} = await fixture();
	const cacheDir = path.join(dir, 'cache-disk');
	const params: BaseNormsParams = {basePath: base, loraPath: lora, cacheDir, need: 'frobenius', subspace: true};
	const handler = getJobHandler('base-norms')!;
	const first = await handler(params, freshContext()) as BaseNormsResult;
	assert.equal(first.computed?.subspace, 5);
	const files = await readdir(path.join(cacheDir, 'base-subspace'));
	assert.equal(files.length, 1);

	// A new engine (empty memory): from disk, the same values.
	const again = await handler(params, freshContext()) as BaseNormsResult;
	assert.equal(again.computed?.subspace, 0);
	assert.equal(again.cached, true);
	for (const ref of refs) {
		assert.deepEqual(again.norms[ref.name]?.subspace, first.norms[ref.name]?.subspace, ref.name);
	}

	assert.ok(Math.abs(again.norms[refs[1]!.name]!.subspace![0]! - 20) < 1e-3);

	// The LoRA's mtime changes: its values may have too.
	const later = new Date(Date.now() + 5000);
	await utimes(lora, later, later);
	const touched = await handler(params, freshContext()) as BaseNormsResult;
	assert.equal(touched.computed?.subspace, 5);

	// A damaged file is recomputed (and rewritten), never trusted.
	const file = path.join(cacheDir, 'base-subspace', files[0]!);
	const stored = JSON.parse(await readFile(file, 'utf8')) as {values: Record<string, unknown>};
	stored.values[refs[1]!.name] = [-1, 'x'];
	await writeFile(file, JSON.stringify(stored));
	const repaired = await handler(params, freshContext()) as BaseNormsResult;
	assert.equal(repaired.computed?.subspace, 5);
	assert.deepEqual(repaired.norms[refs[1]!.name]?.subspace, first.norms[refs[1]!.name]?.subspace);
	assert.equal((await handler(params, freshContext()) as BaseNormsResult).computed?.subspace, 0);
});

async function cli(args: string[], env: Record<string, string>): Promise<CliResult> {
	return runCli(['resize', ...args], {env});
}

test('lorascope resize --recipe subspace=1 --base --json writes the kept triplets (an out-of-order mask included)', async () => {
	const {lora, base, dir, refs} = await fixture();
	const out = path.join(dir, 'out');
	const thr = 0.8;
	const result = await cli([lora, '--recipe', `subspace=1,thr=${thr}`, '--base', base, '-o', out, '--json', '--device', 'cpu', '--dtype', 'fp32'], {['LORASCOPE_CACHE_DIR']: path.join(dir, 'cache-cli')});
	assert.equal(result.code, 0, result.stderr);
	const [report] = JSON.parse(result.stdout) as Array<{base: {subspace?: boolean; unmapped: string[]}; outputs: Array<{outPath: string; unscored: string[]; modules: Array<{name: string; rankAfter: number}>}>}>;
	assert.equal(report!.base.subspace, true);
	const output = report!.outputs[0]!;
	assert.deepEqual(output.unscored, ['lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_q']);
	const header = await readHeader(output.outPath);
	const meta = JSON.parse(header.metadata['lorascope_resize'] ?? '{}') as {method?: {weights?: Record<string, number>}; base?: {file?: string; unscored?: number}};
	assert.equal(meta.method?.weights?.['subspace'], 1, header.metadata['lorascope_resize']);
	// The record names the checkpoint the scores came from, as the dashboard's writes do.
	assert.equal(meta.base?.file, 'base.safetensors');
	assert.equal(meta.base?.unscored, 1);
	const reader = await TensorReader.open(header);
	try {
		for (const ref of refs) {
			const kept = expectedKept(ref, {subspace: 1, fro_ckpt: 0}, thr) ?? [0, 1, 2, 3];
			assert.equal(output.modules.find(m => m.name === ref.name)!.rankAfter, kept.length, ref.name);
			const upInfo = header.byName.get(`${ref.name}.lora_up.weight`)!;
			assert.deepEqual(upInfo.shape, [n, kept.length], ref.name);
			// alpha/k·up·down equals Σ_{j kept} s_j·u_j·v_jᵀ: the written triplets are exactly the mask.
			const up = decodeToFloat32(await reader.readRaw(`${ref.name}.lora_up.weight`), 'F32');
			const down = decodeToFloat32(await reader.readRaw(`${ref.name}.lora_down.weight`), 'F32');
			const alpha = decodeToFloat32(await reader.readRaw(`${ref.name}.alpha`), 'F32')[0]!;
			const k = kept.length;
			let error = 0;
			let norm = 0;
			for (let o = 0; o < n; o++) {
				for (let c = 0; c < n; c++) {
					let got = 0;
					for (let a = 0; a < k; a++) {
						got += up[(o * k) + a]! * down[(a * n) + c]!;
					}

					got *= alpha / k;
					let want = 0;
					for (const j of kept) {
						want += ref.s[j]! * ref.u[j]![o]! * ref.v[j]![c]!;
					}

					error += (got - want) ** 2;
					norm += want ** 2;
				}
			}

			assert.ok(Math.sqrt(error / norm) < 1e-5, `${ref.name}: relative error ${Math.sqrt(error / norm)}`);
		}
	} finally {
		await reader.close();
	}
});
