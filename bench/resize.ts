// `npm run bench resize`: lorascope resize end to end, re-plan latency and base-checkpoint norms.
//   - end to end: `lorascope resize` as a user runs it (process start, engine worker, decomposition,
//     plan, output written) on generated SD1.5 r32 and SDXL r32 LoRAs for --rank 8,
//     sv_ratio 4 and sv_fro 0.9 (cap 32), against kohya's resize_lora on the same shapes;
//   - decomposition alone through a fresh worker;
//   - re-plan latency per slider step on the SDXL decomposition (the preview's budget: 16 ms);
//   - base norms (σ_max, ‖W‖_F) on a generated base checkpoint with the SD1.5 LoRA's targets,
//     cold and from the disk cache, then a spn_ckpt recipe end to end;
//   - the same on ../shared/bench-inputs files (make_lora.py) when they sit in bench-data/, with
//     the ratio against the peer figures in ../shared/bench-inputs/README.md.
// Targets on the 2-core CPU: SD1.5 r32 ≤ 1.5 s end to end (≥ 50× kohya's 78 s), SDXL r32
// decomposition ≤ 2 s, re-plan ≤ 16 ms.
import {spawn} from 'node:child_process';
import {existsSync} from 'node:fs';
import {mkdir, mkdtemp, rm, stat} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import {fileURLToPath} from 'node:url';
import {EngineClient} from '../source/engine/client.js';
import {checkCuda} from '../source/engine/device.js';
import {diffusersUnetToLdm} from '../source/lora/base-map.js';
import {encodeFromFloat32} from '../source/lora/dtypes.js';
import {parseRecipe, planResize, preparePlanInput, type ResizeMethod} from '../source/lora/resize-plan.js';
import {sd15Modules} from '../source/lora/sample-modules.js';
import {writeSample, writeSdxlBenchLora} from '../source/lora/samples.js';
import {writeSafetensorsAtomic, type TensorToWrite} from '../source/lora/writer.js';
import {runCli as runCliProcess} from '../test/helpers/cli.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dataDir = path.join(root, 'bench-data');

type Input = {label: string; file: string; arch: 'sd15' | 'sdxl'; peer: boolean};

/** kohya resize_lora wall medians (s) from ../shared/bench-inputs/README.md (make_lora.py inputs). */
const kohyaSeconds: Record<'sd15' | 'sdxl', Record<string, number>> = {
	sd15: {rank8: 78.06, svratio4: 76.84, svfro09: 80.28},
	sdxl: {rank8: 728.57, svratio4: 731.77, svfro09: 767.24},
};

const methods: Array<{key: string; label: string; args: string[]}> = [
	{key: 'rank8', label: '--rank 8', args: ['--rank', '8']},
	{key: 'svratio4', label: 'sv_ratio 4 (cap 32)', args: ['--method', 'sv_ratio', '--param', '4', '--rank', '32']},
	{key: 'svfro09', label: 'sv_fro 0.9 (cap 32)', args: ['--method', 'sv_fro', '--param', '0.9', '--rank', '32']},
];

function row(cells: Array<string | number>): void {
	console.log(`| ${cells.join(' | ')} |`);
}

function median(values: number[]): number {
	const sorted = [...values].sort((a, b) => a - b);
	return sorted[Math.floor(sorted.length / 2)]!;
}

async function ensureInputs(): Promise<Input[]> {
	await mkdir(dataDir, {recursive: true});
	// The same generated files as bench/engine.ts.
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

	const inputs: Input[] = [
		{label: 'SD1.5 r32 (generated)', file: sd15, arch: 'sd15', peer: false},
		{label: 'SDXL r32 (generated)', file: sdxl, arch: 'sdxl', peer: false},
	];
	const missing: string[] = [];
	for (const [name, label, arch] of [['sd15_r32.safetensors', 'SD1.5 r32 (make_lora.py)', 'sd15'], ['sdxl_r32.safetensors', 'SDXL r32 (make_lora.py)', 'sdxl']] as const) {
		const file = path.join(dataDir, name);
		if (existsSync(file)) {
			inputs.push({label, file, arch, peer: true});
		} else {
			missing.push(name);
		}
	}

	if (missing.length > 0) {
		console.log(`(peer inputs ${missing.join(', ')} not in bench-data/: see ../shared/bench-inputs/README.md; make_lora.py needs python3-numpy)`);
	}

	return inputs;
}

/** The CLI as users run it: the build when present (npm run bench builds first), else tsx. */
function cliCommand(): string[] {
	const built = path.join(root, 'build', 'bundle', 'cli.js');
	return existsSync(built) ? [built] : ['--import', 'tsx', path.join(root, 'source', 'cli.tsx')];
}

type CliRun = {wall: number; json: unknown};

async function runCli(args: string[]): Promise<CliRun> {
	const started = performance.now();
	const {code, stdout, stderr} = await runCliProcess(args, {entry: cliCommand()});
	const wall = (performance.now() - started) / 1000;
	if (code !== 0) {
		throw new Error(`lorascope ${args.join(' ')} exited ${code}: ${stderr.trim().split('\n').at(-1) ?? ''}`);
	}

	return {wall, json: args.includes('--json') ? JSON.parse(stdout) as unknown : null};
}

type JsonReport = Array<{device: string; outputs: Array<{seconds: number; sizes: {outputBytes: number}; totals: {froRetained: number; rankAfter: number}}>}>;

async function endToEnd(inputs: Input[], quick: boolean, device: string): Promise<void> {
	console.log(`\n### End to end: \`lorascope resize\` (process start → file written), device ${device}`);
	row(['input', 'method', 'wall s (median)', 'engine job s', 'out MB', 'energy kept', 'kohya s', 'speed-up']);
	row(['---', '---', '---:', '---:', '---:', '---:', '---:', '---:']);
	const out = await mkdtemp(path.join(os.tmpdir(), 'lorascope-bench-resize-'));
	try {
		for (const input of inputs) {
			for (const method of methods) {
				const walls: number[] = [];
				let report: JsonReport | undefined;
				for (let i = 0; i < (quick ? 1 : 3); i++) {
					const result = await runCli(['resize', input.file, ...method.args, '-o', out, '--overwrite', '--json', '--device', device]);
					walls.push(result.wall);
					report = result.json as JsonReport;
				}

				const output = report![0]!.outputs[0]!;
				const wall = median(walls);
				const kohya = kohyaSeconds[input.arch][method.key]!;
				row([input.label, method.label, wall.toFixed(2), output.seconds.toFixed(2), (output.sizes.outputBytes / 1e6).toFixed(1), `${(output.totals.froRetained * 100).toFixed(1)}%`, kohya.toFixed(1), `${(kohya / wall).toFixed(0)}×${input.peer ? '' : ' (shapes)'}`]);
			}
		}
	} finally {
		await rm(out, {recursive: true, force: true});
	}

	console.log('(kohya: sd-scripts resize_lora on the make_lora.py files, 2 cores, from ../shared/bench-inputs/README.md; "(shapes)": generated input with the same module shapes)');
}

async function decompositionAlone(inputs: Input[], device: 'cpu' | 'cuda'): Promise<void> {
	console.log(`\n### Decomposition through a fresh worker, device ${device}`);
	row(['input', 'decompose s', 'modules']);
	row(['---', '---:', '---:']);
	for (const input of inputs) {
		const client = EngineClient.start({device});
		try {
			await client.device();
			const started = performance.now();
			const summary = await client.run('decompose', {path: input.file}).promise;
			row([input.label, ((performance.now() - started) / 1000).toFixed(2), summary.modules.length]);
		} finally {
			await client.close();
		}
	}
}

async function replanLatency(input: Input, quick: boolean): Promise<void> {
	console.log(`\n### Re-plan latency per step (${input.label}, planResize on the prepared decomposition)`);
	const client = EngineClient.start({device: 'cpu'});
	let spectra;
	try {
		spectra = (await client.run('decompose', {path: input.file}).promise).modules;
	} finally {
		await client.close();
	}

	const prepareStart = performance.now();
	const prepared = preparePlanInput(spectra);
	const prepareMs = performance.now() - prepareStart;
	const base: Record<string, {spectral: number; frobenius: number; subspace: number[]}> = {};
	for (const [index, module] of spectra.entries()) {
		// |uᵢᵀ·W·vᵢ| stand-ins spread over two decades, so subspace scores reorder the values.
		const subspace = module.singularValues.map((_, j) => 10 ** -(((index * 31) + (j * 17)) % 200 / 100));
		base[module.name] = {spectral: 1 + (index % 7), frobenius: 20 + (index % 13), subspace};
	}

	const steps: Array<[string, ResizeMethod[]]> = [
		['sv_fro 0.50…0.99', Array.from({length: 50}, (_, i) => ({method: 'sv_fro', param: 0.5 + (i / 100), rank: 32}))],
		['sv_ratio 1…20', Array.from({length: 20}, (_, i) => ({method: 'sv_ratio', param: 1 + i, rank: 32}))],
		['rank 1…32', Array.from({length: 32}, (_, i) => ({method: 'rank', rank: 1 + i}))],
		['spn_ckpt thr -3…-0.5', Array.from({length: 26}, (_, i) => parseRecipe(`spn_ckpt=1,thr=${-3 + (i / 10)}`))],
		['spn_ckpt size 5…100 MiB', Array.from({length: 20}, (_, i) => parseRecipe(`spn_ckpt=1,size=${5 * (i + 1)}`))],
		['subspace thr -2…0.5', Array.from({length: 26}, (_, i) => parseRecipe(`subspace=1,thr=${-2 + (i / 10)}`))],
		['subspace size 5…100 MiB', Array.from({length: 20}, (_, i) => parseRecipe(`subspace=1,size=${5 * (i + 1)}`))],
	];
	row(['slider', 'steps', 'median ms', 'p95 ms', 'max ms']);
	row(['---', '---:', '---:', '---:', '---:']);
	for (const [label, sequence] of steps) {
		// One untimed pass: the preview's first step after opening also pays JIT warm-up once.
		for (const method of sequence) {
			planResize(prepared, method, {base});
		}

		const times: number[] = [];
		for (let pass = 0; pass < (quick ? 2 : 5); pass++) {
			for (const method of sequence) {
				const start = performance.now();
				planResize(prepared, method, {base});
				times.push(performance.now() - start);
			}
		}

		const sorted = [...times].sort((a, b) => a - b);
		row([label, sequence.length, median(times).toFixed(2), sorted[Math.floor(sorted.length * 0.95)]!.toFixed(2), Math.max(...times).toFixed(2)]);
	}

	// The first subspace plan after the base values arrive scores and sorts every value (a fresh
	// base object defeats the memo); steps after it reuse those scores.
	const firstTimes: number[] = [];
	for (let pass = 0; pass < 5; pass++) {
		const fresh = {...base};
		const start = performance.now();
		planResize(prepared, parseRecipe('subspace=1,thr=-1.2'), {base: fresh});
		firstTimes.push(performance.now() - start);
	}

	console.log(`(${spectra.length} modules, ${spectra.reduce((s, m) => s + m.singularValues.length, 0)} singular values; prepare once: ${prepareMs.toFixed(1)} ms; first subspace plan: ${median(firstTimes).toFixed(1)} ms median; budget 16 ms)`);
}

/** kohya SD1 underscore path → diffusers dotted path (compound names restored). */
function dottedSd1Path(underscored: string): string {
	let dotted = underscored.replaceAll('_', '.');
	for (const word of ['transformer_blocks', 'down_blocks', 'up_blocks', 'mid_block', 'proj_in', 'proj_out', 'to_q', 'to_k', 'to_v', 'to_out', 'text_model', 'self_attn', 'q_proj', 'k_proj', 'v_proj', 'out_proj', 'time_emb_proj', 'conv_shortcut']) {
		dotted = dotted.replaceAll(word.replaceAll('_', '.'), word);
	}

	return dotted;
}

/**
 * A base checkpoint with LDM names holding a weight for every module of the SD1.5 sample LoRA:
 * F16 Gaussian weights plus a rank-one spike (trained weights have a dominant direction).
 */
async function ensureSd15Base(): Promise<string> {
	const file = path.join(dataDir, 'lorascope-sd15-base-targets.safetensors');
	if (existsSync(file)) {
		return file;
	}

	console.log(`generating ${path.relative(root, file)} …`);
	let state = 0x12_34_56_78;
	const next = () => {
		state ^= state << 13;
		state ^= state >>> 17;
		state ^= state << 5;
		return ((state >>> 0) / 4_294_967_296) - 0.5;
	};

	const tensors: TensorToWrite[] = [];
	for (const module of sd15Modules({textEncoder: true})) {
		const columns = module.in * module.kernel * module.kernel;
		let key: string;
		if (module.name.startsWith('lora_te_')) {
			key = `cond_stage_model.transformer.${dottedSd1Path(module.name.slice('lora_te_'.length))}.weight`;
		} else {
			const ldm = diffusersUnetToLdm(dottedSd1Path(module.name.slice('lora_unet_'.length)));
			const upsampler = /^up_blocks_(\d+)_upsamplers/.exec(module.name.slice('lora_unet_'.length));
			key = `model.diffusion_model.${(upsampler && upsampler[1] !== '0' ? ldm[1] : ldm[0]) ?? module.name}.weight`;
		}

		const shape = module.conv ? [module.out, module.in, module.kernel, module.kernel] : [module.out, module.in];
		tensors.push({
			name: key,
			dtype: 'F16',
			shape,
			data: async () => {
				const values = new Float32Array(module.out * columns);
				const u = Float32Array.from({length: module.out}, next);
				const v = Float32Array.from({length: columns}, next);
				const scale = 1 / Math.sqrt(columns);
				for (let i = 0; i < module.out; i++) {
					for (let j = 0; j < columns; j++) {
						values[(i * columns) + j] = (next() * scale) + (u[i]! * v[j]! * 8 * scale);
					}
				}

				return encodeFromFloat32(values, 'F16');
			},
		});
	}

	await writeSafetensorsAtomic(file, tensors, {note: 'lorascope bench: synthetic base weights for the SD1.5 sample targets'}, {overwrite: true});
	return file;
}

/** A checkpoint recipe as the bench runs it, and the base norms it needs (fro_ckpt alone: ‖W‖_F only). */
type BenchRecipe = {text: string; need: 'frobenius' | 'both'; subspace?: true};
const spnRecipe: BenchRecipe = {text: 'spn_ckpt=1,thr=-1.2', need: 'both'};
const froRecipe: BenchRecipe = {text: 'fro_ckpt=1,thr=-3.5', need: 'frobenius'};
// subspace scores |uᵢᵀ·W·vᵢ| per singular value: the job decomposes the LoRA and reads every mapped weight.
const subspaceRecipe: BenchRecipe = {text: 'subspace=0.5,fro_ckpt=0.5,thr=-1.5', need: 'frobenius', subspace: true};

async function recipeRun(lora: string, base: string, out: string, cacheDir: string, device: string, recipe: string): Promise<number> {
	const env = {...process.env, ['LORASCOPE_CACHE_DIR']: cacheDir};
	const started = performance.now();
	await new Promise<void>((resolve, reject) => {
		const child = spawn(process.execPath, [...cliCommand(), 'resize', lora, '--recipe', recipe, '--base', base, '-o', out, '--overwrite', '--device', device], {cwd: root, env, stdio: ['ignore', 'ignore', 'pipe']});
		let stderr = '';
		child.stderr.on('data', (chunk: Buffer) => {
			stderr += chunk.toString();
		});
		child.on('error', reject);
		child.on('close', code => (code === 0 ? resolve() : reject(new Error(`recipe run exited ${code}: ${stderr.trim().split('\n').at(-1) ?? ''}`))));
	});
	return (performance.now() - started) / 1000;
}

/**
 * The base-norms job alone (cold, then from the disk cache), and `lorascope resize --recipe <recipe>
 * --base` end to end with an empty norms cache and with it filled: the two figures elias-gaeros was
 * measured on.
 */
async function baseNorms(lora: string, base: string, label: string, device: 'cpu' | 'cuda', recipe: BenchRecipe, peer?: {cold: number; warm: number}): Promise<void> {
	const cacheDir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-bench-norms-'));
	const cliCache = await mkdtemp(path.join(os.tmpdir(), 'lorascope-bench-norms-cli-'));
	const out = await mkdtemp(path.join(os.tmpdir(), 'lorascope-bench-recipe-'));
	const client = EngineClient.start({device});
	try {
		const {size} = await stat(base);
		await client.device();
		const coldStart = performance.now();
		const cold = await client.run('base-norms', {basePath: base, loraPath: lora, cacheDir, need: recipe.need, ...(recipe.subspace ? {subspace: true} : {})}).promise;
		const coldSeconds = (performance.now() - coldStart) / 1000;
		const warmStart = performance.now();
		const warm = await client.run('base-norms', {basePath: base, loraPath: lora, cacheDir, need: recipe.need, ...(recipe.subspace ? {subspace: true} : {})}).promise;
		const warmSeconds = (performance.now() - warmStart) / 1000;
		await client.close();
		const recipeCold = await recipeRun(lora, base, out, cliCache, device, recipe.text);
		const recipeWarm = await recipeRun(lora, base, out, cliCache, device, recipe.text);
		row([
			label,
			recipe.text,
			(size / 1e6).toFixed(0),
			`${Object.keys(cold.norms).length} / ${cold.unmapped.length}`,
			coldSeconds.toFixed(2),
			(size / 1e6 / coldSeconds).toFixed(0),
			`${(warmSeconds * 1000).toFixed(0)} ms${warm.cached ? '' : ' (not cached!)'}`,
			recipeCold.toFixed(2),
			recipeWarm.toFixed(2),
			peer === undefined ? '–' : `${peer.cold} s / ${peer.warm} s (${(peer.cold / recipeCold).toFixed(1)}× / ${(peer.warm / recipeWarm).toFixed(1)}×)`,
		]);
	} finally {
		await client.close();
		await rm(cacheDir, {recursive: true, force: true});
		await rm(cliCache, {recursive: true, force: true});
		await rm(out, {recursive: true, force: true});
	}
}

export async function run({quick}: {quick: boolean}): Promise<void> {
	const cuda = checkCuda();
	const devices: Array<'cpu' | 'cuda'> = cuda.available ? ['cpu', 'cuda'] : ['cpu'];
	console.log(`CUDA provider: ${cuda.available ? 'available' : 'unavailable'} (${cuda.reason})`);
	const inputs = await ensureInputs();
	for (const device of devices) {
		await endToEnd(inputs, quick, device);
		await decompositionAlone(inputs, device);
	}

	await replanLatency(inputs.find(i => i.arch === 'sdxl')!, quick);

	console.log('\n### Base-checkpoint norms (‖W‖_F streamed; σ_max by Lanczos on the engine kernels for spn_ckpt) and the recipe end to end with --base');
	row(['base', 'recipe', 'MB', 'mapped / unmapped', 'norms cold s', 'MB/s', 'norms cached', 'recipe cold s', 'recipe cached s', 'elias-gaeros cold / cached']);
	row(['---', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---']);
	const sd15Base = await ensureSd15Base();
	for (const device of devices) {
		for (const recipe of [froRecipe, spnRecipe, subspaceRecipe]) {
			await baseNorms(inputs[0]!.file, sd15Base, `SD1.5 targets (generated F16), ${device}`, device, recipe);
		}
	}

	const peerSd15Base = path.join(dataDir, 'sd15_base_lora_targets.safetensors');
	const peerSd15 = inputs.find(i => i.peer && i.arch === 'sd15');
	if (existsSync(peerSd15Base) && peerSd15) {
		await baseNorms(peerSd15.file, peerSd15Base, 'SD1.5 base targets (make_lora.py)', 'cpu', spnRecipe);
	}

	const peerBase = path.join(dataDir, 'sdxl_base_lora_targets.safetensors');
	const peerLora = inputs.find(i => i.peer && i.arch === 'sdxl');
	if (existsSync(peerBase) && peerLora && !quick) {
		// elias-gaeros figures, no norms cache / cache present (../shared/bench-inputs/README.md): its
		// default fro_ckpt=1,thr=-3.5, and spn_ckpt=1,thr=-1.2.
		await baseNorms(peerLora.file, peerBase, 'SDXL base targets (make_lora.py, 5.4 GiB)', 'cpu', froRecipe, {cold: 5.51, warm: 2.63});
		await baseNorms(peerLora.file, peerBase, 'SDXL base targets (make_lora.py, 5.4 GiB)', 'cpu', spnRecipe, {cold: 64.21, warm: 2.01});
		await baseNorms(peerLora.file, peerBase, 'SDXL base targets (make_lora.py, 5.4 GiB)', 'cpu', subspaceRecipe);
	} else {
		console.log(`(SDXL base ${existsSync(peerBase) ? 'skipped in --quick' : 'sdxl_base_lora_targets.safetensors not in bench-data/ (make_lora.py base sdxl)'})`);
	}

	console.log('(elias-gaeros on 2 cores with torch; its SD1.5 support maps no layers, so only SDXL has a peer figure)');
}
