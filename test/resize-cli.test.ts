import assert from 'node:assert/strict';
import {mkdtemp, readdir, readFile, rm} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {baseNormsNeed, parseResizeArgs} from '../source/commands/resize.js';
import {EngineClient} from '../source/engine/client.js';
import {CancelledError} from '../source/engine/protocol.js';
import {buildLoraModel} from '../source/lora/model.js';
import {readHeader} from '../source/lora/safetensors.js';
import {encodeFromFloat32} from '../source/lora/dtypes.js';
import {writeSample} from '../source/lora/samples.js';
import {writeSafetensorsAtomic, type TensorToWrite} from '../source/lora/writer.js';
import {runCli, type CliResult} from './helpers/cli.js';

let folder: string;
let small: string;
let large: string;

before(async () => {
	folder = await mkdtemp(path.join(os.tmpdir(), 'lorascope-resize-cli-'));
	small = path.join(folder, 'small.safetensors');
	large = path.join(folder, 'large.safetensors');
	await writeSample(small, 'sd15-lora', {rank: 8, alpha: 4});
	await writeSample(large, 'sd15-lora', {rank: 32, alpha: 16, textEncoder: false});
});

after(async () => {
	await rm(folder, {recursive: true, force: true});
});

async function cli(args: string[], options: {sigintAfterMs?: number; env?: Record<string, string>} = {}): Promise<CliResult> {
	return runCli(['resize', ...args], options);
}

test('lorascope resize --rank --json through the real worker', async () => {
	const out = path.join(folder, 'out');
	const result = await cli([small, '--rank', '4', '-o', out, '--json']);
	assert.equal(result.code, 0, result.stderr);
	const reports = JSON.parse(result.stdout) as Array<{source: string; device: string; outputs: Array<{outPath: string; device: string; modules: Array<{name: string; rankBefore: number; rankAfter: number; alphaAfter: number; froRetained: number}>; totals: {froRetained: number}; sizes: {outputBytes: number; sourceBytes: number}}>}>;
	assert.equal(reports.length, 1);
	const [output] = reports[0]!.outputs;
	assert.ok(output);
	assert.equal(reports[0]!.device, 'cpu');
	assert.equal(output.outPath, path.join(out, 'small_rank4.safetensors'));
	const header = await readHeader(output.outPath);
	assert.equal(header.sizeBytes, output.sizes.outputBytes);
	const model = buildLoraModel(header);
	const written = new Map(model.modules.map(m => [m.name, m]));
	for (const module of output.modules) {
		assert.ok(module.rankAfter <= 4);
		if (module.rankAfter > 0) {
			assert.equal(written.get(module.name)?.rank, module.rankAfter);
			// Sample alpha 4 at rank 8: scale 0.5 kept, alpha = 0.5 × 4.
			assert.equal(module.alphaAfter, 2);
		}

		assert.ok(module.froRetained > 0 && module.froRetained <= 1);
	}

	assert.equal(header.metadata['ss_network_dim'], '4');
	assert.equal(header.metadata['ss_network_alpha'], '2.0');
});

test('several recipes in one run write one file each', async () => {
	const out = path.join(folder, 'recipes');
	const result = await cli([small, '--recipe', 'spn_lora=1,thr=-0.6', '--recipe', 'spn_lora=1,size=0.5', '-o', out]);
	assert.equal(result.code, 0, result.stderr);
	assert.match(result.stdout, /wrote .*small_spnlora1_thr-0\.6\.safetensors/);
	assert.match(result.stdout, /wrote .*small_spnlora1_size0\.5\.safetensors/);
	assert.deepEqual((await readdir(out)).sort(), ['small_spnlora1_size0.5.safetensors', 'small_spnlora1_thr-0.6.safetensors']);
});

test('usage errors exit 2 with a reason', async () => {
	for (const [args, pattern] of [
		[[small], /choose --rank N/],
		[[small, '--method', 'sv_fro'], /needs --param/],
		[[small, '--rank', '4', '--dtype', 'fp8'], /--dtype must be/],
		[[small, '--method', 'sv_fro', '--param', '2'], /fraction/],
		[[small, '--recipe', 'spn_ckpt=1,thr=-1'], /--base/],
	] as Array<[string[], RegExp]>) {
		const result = await cli(args);
		assert.equal(result.code, 2, args.join(' '));
		assert.match(result.stderr, pattern);
	}
});

test('a missing file fails with exit 1 and a one-line reason', async () => {
	const result = await cli([path.join(folder, 'nope.safetensors'), '--rank', '2']);
	assert.equal(result.code, 1);
	assert.match(result.stderr, /nope\.safetensors/);
	assert.equal(result.stderr.trim().split('\n').length, 1);
});

test('Ctrl+C leaves no output file', async () => {
	const out = path.join(folder, 'sigint');
	const result = await cli([large, '--rank', '2', '-o', out], {sigintAfterMs: 900});
	assert.notEqual(result.code, 0);
	const names = await readdir(out).catch((): string[] => []);
	assert.ok(!names.includes('large_rank2.safetensors'), `left ${names.join(', ')}`);
});

test('engine: cancel and crash leave no target; a second method reuses the decomposition', async () => {
	const client = EngineClient.start({device: 'cpu'});
	try {
		const out = path.join(folder, 'engine');
		// Cancel as soon as the job reports anything.
		const job = client.run('resize-write', {path: large, method: {method: 'rank', rank: 2}, outDir: out}, {
			onProgress() {
				client.cancel(job.jobId);
			},
		});
		await assert.rejects(job.promise, CancelledError);
		await client.idle();

		// Kill the worker late in the job: while it writes, or (progress is throttled) at the end of building.
		let killed = false;
		const crash = client.run('resize-write', {path: large, method: {method: 'rank', rank: 3}, outDir: out}, {
			onProgress(event) {
				const late = event.label === 'writing' || (event.label?.startsWith('building ') && event.done / event.total > 0.8);
				if (late && !killed) {
					killed = true;
					process.kill(client.workerPid()!, 'SIGKILL');
				}
			},
		});
		await assert.rejects(crash.promise, /engine stopped/);
		const names = await readdir(out).catch((): string[] => []);
		assert.ok(!names.includes('large_rank2.safetensors') && !names.includes('large_rank3.safetensors'), names.join(', '));

		// A fresh worker: the first run decomposes, the second reuses it (no decompose progress).
		await client.run('resize-write', {path: large, method: {method: 'rank', rank: 4}, outDir: out}).promise;
		const labels: string[] = [];
		const second = await client.run('resize-write', {path: large, method: {method: 'sv_ratio', param: 4}, outDir: out}, {
			onProgress(event) {
				labels.push(event.label ?? '');
			},
		}).promise;
		assert.ok(labels.length > 0);
		assert.ok(labels.every(l => l.startsWith('building ') || l === 'writing'), labels.filter(l => !l.startsWith('building ')).slice(0, 3).join(', '));
		assert.equal(second.outPath, path.join(out, 'large_sv_ratio4.safetensors'));
	} finally {
		await client.close();
	}
});

test('base norms: σ_max is requested only when a recipe uses spn_ckpt', () => {
	const need = (...recipes: string[]) => {
		const options = parseResizeArgs([small, ...recipes.flatMap(r => ['--recipe', r]), '--base', 'base.safetensors']);
		assert.notEqual(options, 'help');
		return baseNormsNeed(options === 'help' ? [] : options.methods);
	};

	assert.equal(need('fro_ckpt=1,thr=-3.5'), 'frobenius');
	assert.equal(need('fro_ckpt=1,spn_lora=1,thr=-2'), 'frobenius');
	assert.equal(need('spn_ckpt=1,thr=-1.2'), 'both');
	assert.equal(need('fro_ckpt=0.5,spn_ckpt=0.5,thr=-1.2'), 'both');
	assert.equal(need('fro_ckpt=1,thr=-3.5', 'spn_ckpt=1,size=1'), 'both');
});

test('lorascope resize --base: fro_ckpt streams only ‖W‖_F; spn_ckpt later adds σ_max to the cache', async () => {
	const dir = await mkdtemp(path.join(folder, 'base-'));
	const cacheDir = path.join(dir, 'cache');
	const names = ['to_q', 'to_k', 'to_v'];
	const loraTensors: TensorToWrite[] = [];
	const baseTensors: TensorToWrite[] = [];
	const expectedFrobenius: number[] = [];
	for (const [index, part] of names.entries()) {
		const lora = `lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_${part}`;
		// Rank-4 factors with distinct scales: the thresholds below keep different ranks.
		const down = Float32Array.from({length: 4 * 32}, (_, i) => ((i % 4) === (Math.floor(i / 32) % 4) ? 10 ** -(i % 4) : 0));
		const up = Float32Array.from({length: 32 * 4}, (_, i) => (Math.floor(i / 4) === (i % 4) ? 1 : 0));
		loraTensors.push(
			{name: `${lora}.alpha`, dtype: 'F32', shape: [], data: encodeFromFloat32(Float32Array.of(4), 'F32')},
			{name: `${lora}.lora_down.weight`, dtype: 'F32', shape: [4, 32], data: encodeFromFloat32(down, 'F32')},
			{name: `${lora}.lora_up.weight`, dtype: 'F32', shape: [32, 4], data: encodeFromFloat32(up, 'F32')},
		);
		// Base weight: a multiple of the identity, ‖W‖_F = c·√32, σ_max = c.
		const scale = 2 ** index;
		baseTensors.push({name: `model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.${part}.weight`, dtype: 'F32', shape: [32, 32], data: encodeFromFloat32(Float32Array.from({length: 32 * 32}, (_, i) => (i % 33 === 0 ? scale : 0)), 'F32')});
		expectedFrobenius.push(scale * Math.sqrt(32));
	}

	const lora = path.join(dir, 'lora.safetensors');
	const base = path.join(dir, 'base.safetensors');
	await writeSafetensorsAtomic(lora, loraTensors, {ss_network_module: 'networks.lora'});
	await writeSafetensorsAtomic(base, baseTensors, undefined);
	const readCacheEntries = async () => {
		const [file] = await readdir(path.join(cacheDir, 'base-norms'));
		const content = JSON.parse(await readFile(path.join(cacheDir, 'base-norms', file!), 'utf8')) as {norms: Record<string, {frobenius: number; spectral?: number}>};
		return names.map(part => content.norms[`model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.${part}.weight`]!);
	};

	const env = {['LORASCOPE_CACHE_DIR']: cacheDir};
	const fro = await cli([lora, '--recipe', 'fro_ckpt=1,thr=-2.5', '--base', base, '-o', path.join(dir, 'out'), '--json', '--device', 'cpu'], {env});
	assert.equal(fro.code, 0, fro.stderr);
	const [report] = JSON.parse(fro.stdout) as Array<{base: {need: string; cached: boolean}; outputs: Array<{modules: Array<{name: string; rankAfter: number}>}>}>;
	assert.equal(report!.base.need, 'frobenius');
	assert.equal(report!.base.cached, false);
	for (const [index, entry] of (await readCacheEntries()).entries()) {
		assert.ok(Math.abs(entry.frobenius - expectedFrobenius[index]!) < 1e-9 * expectedFrobenius[index]!, `${names[index]} F ${entry.frobenius}`);
		assert.equal(entry.spectral, undefined, names[index]);
	}

	// ΔW (scale alpha/rank = 1) has four orthogonal rows, row r holding eight entries 10^-r: singular
	// values √8·10^-r. Kept where log10 S − log10 ‖W‖_F > −2.5: 3, 2 and 2 values for the three bases.
	const ranks = report!.outputs[0]!.modules.map(module => {
		const frobenius = expectedFrobenius[names.findIndex(part => module.name.endsWith(part))]!;
		const keep = [0, 1, 2, 3].map(r => Math.sqrt(8) * 10 ** -r).filter(s => Math.log10(s) - Math.log10(frobenius) > -2.5).length;
		assert.equal(module.rankAfter, keep, module.name);
		return keep;
	});
	assert.deepEqual(ranks.toSorted(), [2, 2, 3]);

	const spn = await cli([lora, '--recipe', 'spn_ckpt=1,thr=-1.5', '--base', base, '-o', path.join(dir, 'out'), '--json', '--device', 'cpu'], {env});
	assert.equal(spn.code, 0, spn.stderr);
	assert.equal((JSON.parse(spn.stdout) as Array<{base: {need: string}}>)[0]!.base.need, 'both');
	for (const [index, entry] of (await readCacheEntries()).entries()) {
		assert.ok(Math.abs(entry.spectral! - (2 ** index)) < 1e-5 * (2 ** index), `${names[index]} σ ${entry.spectral}`);
	}
});
