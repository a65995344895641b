// `npm run bench engine`: the engine's kernels and decomposition.
//   - Gram throughput: onnxruntime (float64 accumulation) against plain JS loops;
//   - session.run overhead on a 1×1 product;
//   - decomposition of generated SD1.5 r32 and SDXL r32 LoRAs (H3's sample generator, written
//     once into bench-data/), in-process (cold: first call creates the sessions; warm: second
//     call on a fresh cache) and through a forked worker (process start included);
//   - the same on ../shared/bench-inputs files copied or generated into bench-data/ when present.
// Target on the 2-core CPU: SDXL r32 decomposition ≤ 2 s.
import {existsSync} from 'node:fs';
import {mkdir, stat} from 'node:fs/promises';
import path from 'node:path';
import process from 'node:process';
import {fileURLToPath} from 'node:url';
import {EngineClient} from '../source/engine/client.js';
import {checkCuda} from '../source/engine/device.js';
import {decomposeHeader} from '../source/engine/jobs/decompose.js';
import {createOrtKernels} from '../source/engine/kernels/ort-kernels.js';
import {gramColsJs} from '../source/engine/kernels/js-kernels.js';
import type {EngineKernels} from '../source/engine/kernels/types.js';
import {computeFileHashes} from '../source/lora/hashes.js';
import {readHeader} from '../source/lora/safetensors.js';
import {writeSample, writeSdxlBenchLora} from '../source/lora/samples.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dataDir = path.join(root, 'bench-data');

function randomMatrix(length: number): Float32Array {
	let state = 12_345;
	return Float32Array.from({length}, () => {
		state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
		return (state / 2 ** 32) - 0.5;
	});
}

async function timeIt(repeats: number, body: () => Promise<unknown>): Promise<number> {
	await body();
	const start = performance.now();
	for (let i = 0; i < repeats; i++) {
		await body();
	}

	return (performance.now() - start) / repeats;
}

function row(cells: Array<string | number>): void {
	console.log(`| ${cells.join(' | ')} |`);
}

async function gramFigures(kernels: EngineKernels, quick: boolean): Promise<void> {
	console.log('\n### Gram MᵀM (float64 accumulation)');
	row(['shape', 'onnxruntime ms', 'plain JS ms', 'speed-up', 'ORT GFLOP/s']);
	row(['---', '---:', '---:', '---:', '---:']);
	const shapes: Array<[number, number]> = quick ? [[1280, 32], [10_240, 128]] : [[320, 32], [1280, 32], [5120, 32], [10_240, 128]];
	for (const [rows, cols] of shapes) {
		const m = randomMatrix(rows * cols);
		const ort = await timeIt(quick ? 5 : 20, async () => kernels.gramCols(m, rows, cols));
		const js = await timeIt(quick ? 1 : 3, async () => gramColsJs(m, rows, cols));
		const flops = 2 * rows * cols * cols;
		row([`${rows}×${cols}`, ort.toFixed(3), js.toFixed(1), `${(js / ort).toFixed(0)}×`, (flops / ort / 1e6).toFixed(1)]);
	}

	const one = Float32Array.of(1);
	const calls = quick ? 2000 : 20_000;
	const perCall = await timeIt(calls, async () => kernels.matmul(one, 1, 1, one, 1));
	console.log(`\nsession.run overhead (1×1 MatMul, ${calls} calls): ${(perCall * 1000).toFixed(1)} µs per call`);
}

type Input = {label: string; file: string};

async function ensureGenerated(): Promise<Input[]> {
	await mkdir(dataDir, {recursive: true});
	const sd15 = path.join(dataDir, 'lorascope-sd15-r32.safetensors');
	const sdxl = path.join(dataDir, 'lorascope-sdxl-r32.safetensors');
	if (!existsSync(sd15)) {
		console.log(`generating ${path.relative(root, sd15)} …`);
		await writeSample(sd15, 'sd15-lora', {rank: 32, alpha: 16, hashes: false, outputName: 'sd15_bench_r32'});
	}

	if (!existsSync(sdxl)) {
		console.log(`generating ${path.relative(root, sdxl)} (≈230 MB) …`);
		await writeSdxlBenchLora(sdxl);
	}

	const inputs: Input[] = [{label: 'SD1.5 r32 (generated)', file: sd15}, {label: 'SDXL r32 (generated)', file: sdxl}];
	// Files made by ../shared/bench-inputs/make_lora.py (see its README), timed when present.
	for (const [name, label] of [['sd15_r32.safetensors', 'SD1.5 r32 (make_lora.py)'], ['sdxl_r32.safetensors', 'SDXL r32 (make_lora.py)'], ['sd15_locon_r32c8.safetensors', 'SD1.5 LoCon r32/c8 (make_lora.py)']] as const) {
		const file = path.join(dataDir, name);
		if (existsSync(file)) {
			inputs.push({label, file});
		}
	}

	return inputs;
}

async function decompositionFigures(kernels: EngineKernels, inputs: Input[], quick: boolean): Promise<void> {
	console.log('\n### Decomposition (all singular values of every module), in-process');
	row(['input', 'MB', 'modules', 'resizable', 'first s', 'median s', 'MB/s']);
	row(['---', '---:', '---:', '---:', '---:', '---:', '---:']);
	for (const input of inputs) {
		const header = await readHeader(input.file);
		const runs: number[] = [];
		let modules = 0;
		let resizable = 0;
		for (let i = 0; i < (quick ? 2 : 4); i++) {
			const start = performance.now();
			const result = await decomposeHeader(header, {kernels, device: kernels.device});
			runs.push((performance.now() - start) / 1000);
			modules = result.summary.modules.length;
			resizable = result.summary.modules.filter(m => m.resizable).length;
		}

		const sorted = runs.slice(1).sort((a, b) => a - b);
		const median = sorted[Math.floor(sorted.length / 2)]!;
		row([input.label, (header.sizeBytes / 1e6).toFixed(1), modules, resizable, runs[0]!.toFixed(2), median.toFixed(2), (header.sizeBytes / 1e6 / median).toFixed(0)]);
	}
}

async function workerFigures(inputs: Input[]): Promise<void> {
	console.log('\n### Through the engine worker (fork + session creation + decompose; then the cached repeat)');
	row(['input', 'worker ready s', 'decompose s', 'cached repeat ms', 'device']);
	row(['---', '---:', '---:', '---:', '---']);
	for (const input of inputs.slice(0, 2)) {
		const started = performance.now();
		const client = EngineClient.start();
		try {
			const device = await client.device();
			const ready = (performance.now() - started) / 1000;
			const jobStart = performance.now();
			await client.run('decompose', {path: input.file}).promise;
			const decompose = (performance.now() - jobStart) / 1000;
			const cachedStart = performance.now();
			await client.run('decompose', {path: input.file}).promise;
			const cached = performance.now() - cachedStart;
			row([input.label, ready.toFixed(2), decompose.toFixed(2), cached.toFixed(1), device.device]);
		} finally {
			await client.close();
		}
	}
}

/** The Hashes job's work (`H` in the dashboard, `inspect --hash`): full SHA-256 (and AutoV2), the tensor-data hash and sshs_legacy_hash, one read. */
async function hashFigures(inputs: Input[]): Promise<void> {
	console.log('\n### File hashes (SHA-256 + AutoV2, tensor-data hash, sshs legacy hash in one pass; page cache)');
	console.log('| input | MB | s (mean of 3) | MB/s |');
	console.log('| --- | ---: | ---: | ---: |');
	for (const input of inputs.filter(i => i.label.startsWith('SDXL'))) {
		const bytes = (await stat(input.file)).size;
		const seconds = (await timeIt(3, async () => computeFileHashes(input.file))) / 1000;
		console.log(`| ${input.label} | ${(bytes / 1e6).toFixed(1)} | ${seconds.toFixed(2)} | ${(bytes / 1e6 / seconds).toFixed(0)} |`);
	}
}

export async function run({quick}: {quick: boolean}): Promise<void> {
	const cuda = checkCuda();
	console.log(`CUDA provider: ${cuda.available ? 'available' : 'unavailable'} (${cuda.reason})`);
	const devices = cuda.available ? (['cpu', 'cuda'] as const) : (['cpu'] as const);
	const inputs = await ensureGenerated();
	for (const device of devices) {
		console.log(`\n## device ${device}`);
		const kernels = await createOrtKernels(device);
		try {
			await gramFigures(kernels, quick);
			await decompositionFigures(kernels, inputs, quick);
		} finally {
			await kernels.dispose();
		}
	}

	await workerFigures(inputs);
	await hashFigures(inputs);
	const sizes = await Promise.all(inputs.map(async input => (await stat(input.file)).size));
	console.log(`\n(${inputs.length} inputs, ${(sizes.reduce((a, b) => a + b, 0) / 1e6).toFixed(0)} MB; node ${process.version}, target: SDXL r32 decomposition ≤ 2 s)`);
}
