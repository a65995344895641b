// Deterministic generator of realistic synthetic LoRA files: real architecture module lists and
// shapes, the metadata trainers write, and weights whose product up·down has a prescribed,
// decaying singular spectrum (so resize thresholds and spectra mean something). Same kind and
// options → same bytes, on every run.
import {mkdir, readdir, rename, rm, stat, writeFile} from 'node:fs/promises';
import path from 'node:path';
import {dtypeSize, encodeFromFloat32} from './dtypes.js';
import {sshsHashesFor} from './hashes.js';
import {kohyaMetadata, peftMetadata, pyJson, type DatasetDir, type KohyaRun} from './sample-metadata.js';
import {fluxKohyaModules, fluxPeftModules, sd15Modules, sdxlModules, type SampleModule} from './sample-modules.js';
import {SampleRandom} from './sample-random.js';
import {compareCodePoints} from './stats.js';
import {writeSafetensorsAtomic, type TensorToWrite} from './writer.js';

export type SampleKind =
	| 'sd15-lora'
	| 'sd15-locon'
	| 'sdxl-lora'
	| 'flux-lora'
	| 'sd15-loha'
	| 'sd15-lokr'
	| 'flux-peft'
	| 'sd15-epoch';

export const sampleKinds: readonly SampleKind[] = ['sd15-lora', 'sd15-locon', 'sdxl-lora', 'flux-lora', 'sd15-loha', 'sd15-lokr', 'flux-peft', 'sd15-epoch'];

export type SampleDType = 'F16' | 'BF16' | 'F32';

export type SampleOptions = {
	/** Rank of linear and 1×1 modules (LoHa/LoKr: their dim). */
	rank?: number;
	alpha?: number;
	/** LoCon/LoKr: rank and alpha of 3×3 conv modules. */
	convRank?: number;
	convAlpha?: number;
	/** Tensor dtype (default F16, as most trainers save). */
	dtype?: SampleDType;
	/** Changes every weight and the run's dates/ids; default 1. */
	seed?: number;
	/** Epoch series: this file's epoch (1..epochs) and the run length. */
	epoch?: number;
	epochs?: number;
	/** Include text-encoder modules where the kind has them (default true). */
	textEncoder?: boolean;
	/** ss_output_name / modelspec.title. */
	outputName?: string;
	/** Compute sshs_model_hash / sshs_legacy_hash as sd-scripts does (default true). */
	hashes?: boolean;
};

export type GeneratedSample = {
	tensors: TensorToWrite[];
	metadata: Record<string, string>;
	/** Designed singular values of up·down (before alpha/rank) per LoRA module name. */
	spectra: Record<string, number[]>;
};

type Algo = 'lora' | 'loha' | 'lokr';
type Naming = 'kohya' | 'peft';

type ModulePlan = {
	module: SampleModule;
	algo: Algo;
	naming: Naming;
	rank: number;
	alpha: number;
	/** Trained to exactly zero (kohya initialises up to zero; untrained layers stay there). */
	zero: boolean;
};

type TensorPlan = {name: string; shape: number[]; plan: ModulePlan; role: string};

type SamplePlan = {
	modules: ModulePlan[];
	metadata: Record<string, string>;
	dtype: SampleDType;
	seed: number;
	/** Spectrum growth of an epoch series: 1 for a finished run. */
	progress: number;
};

const defaultSeed = 1;

// ---------------------------------------------------------------- linear algebra helpers

/**
 * r orthonormal columns of length m (stored column after column) by modified Gram–Schmidt on
 * Gaussian vectors: with m ≫ r those are well conditioned, so one pass is orthogonal to rounding.
 */
function orthonormalColumns(random: SampleRandom, m: number, r: number): Float64Array {
	const q = random.fillGaussian(new Float64Array(m * r));
	for (let j = 0; j < r; j++) {
		const vj = j * m;
		for (let i = 0; i < j; i++) {
			const vi = i * m;
			let dot = 0;
			for (let k = 0; k < m; k++) {
				dot += q[vi + k]! * q[vj + k]!;
			}

			for (let k = 0; k < m; k++) {
				q[vj + k]! -= dot * q[vi + k]!;
			}
		}

		let norm = 0;
		for (let k = 0; k < m; k++) {
			norm += q[vj + k]! * q[vj + k]!;
		}

		const inverse = norm > 0 ? 1 / Math.sqrt(norm) : 0;
		for (let k = 0; k < m; k++) {
			q[vj + k]! *= inverse;
		}
	}

	return q;
}

/** Largest-first factor pair of n closest to √n (LyCORIS' factorisation, as real LoKr files show). */
export function factorPair(n: number): [number, number] {
	let small = Math.floor(Math.sqrt(n));
	while (small > 1 && n % small !== 0) {
		small--;
	}

	return [n / small, small];
}

/** s_i = s0·(e^(−i/τ) + floor)·lognormal noise, sorted descending: a trained LoRA's typical decay. */
function designedSpectrum(random: SampleRandom, out: number, rank: number, progress: number): number[] {
	const tau = random.uniform(Math.max(1, rank / 16), Math.max(1.5, rank / 3));
	const floor = random.uniform(0.01, 0.05);
	const s0 = 0.2 * Math.sqrt(out / 1280) * Math.exp(0.35 * random.gaussian());
	// Early epochs: smaller updates with energy concentrated in the first directions.
	const growth = 0.45 + (0.55 * (1 - Math.exp(-2.5 * progress)) / (1 - Math.exp(-2.5)));
	const effectiveTau = tau * (0.55 + (0.45 * progress));
	const values: number[] = [];
	for (let i = 0; i < rank; i++) {
		values.push(s0 * growth * (Math.exp(-i / effectiveTau) + floor) * Math.exp(0.08 * random.gaussian()));
	}

	return values.sort((a, b) => b - a);
}

// ---------------------------------------------------------------- per-module tensors

type ModuleTensors = Map<string, Float32Array>;

/** kohya down rows have norm ≈ 1/√3 (kaiming-uniform init); up carries the spectrum. */
const downRowNorm = 1 / Math.sqrt(3);

function loraTensors(plan: ModulePlan, seed: number, progress: number, spectra?: Record<string, number[]>): ModuleTensors {
	const {module, rank} = plan;
	const m = module.out;
	const n = module.in * module.kernel * module.kernel;
	const random = new SampleRandom(seed, module.name);
	const spectrum = designedSpectrum(random, m, rank, progress);
	const q1 = orthonormalColumns(random, m, rank);
	const q2 = orthonormalColumns(random, n, rank);
	const up = new Float32Array(m * rank);
	const down = new Float32Array(rank * n);
	for (let i = 0; i < rank; i++) {
		const factor = plan.zero ? 0 : spectrum[i]! / downRowNorm;
		for (let row = 0; row < m; row++) {
			up[(row * rank) + i] = q1[(i * m) + row]! * factor;
		}

		for (let col = 0; col < n; col++) {
			down[(i * n) + col] = q2[(i * n) + col]! * downRowNorm;
		}
	}

	if (spectra) {
		spectra[module.name] = plan.zero ? spectrum.map(() => 0) : spectrum;
	}

	return new Map([['down', down], ['up', up]]);
}

function gaussianMatrix(random: SampleRandom, rows: number, cols: number, scale: number, columnDecay = 0): Float32Array {
	const values = random.fillGaussian(new Float64Array(rows * cols), scale);
	const out = new Float32Array(rows * cols);
	for (let i = 0; i < rows; i++) {
		for (let j = 0; j < cols; j++) {
			out[(i * cols) + j] = values[(i * cols) + j]! * Math.exp(-columnDecay * j);
		}
	}

	return out;
}

/** LoHa: ΔW = (w1a·w1b) ⊙ (w2a·w2b); LyCORIS initialises w?b ~ N(0,1), w1a ~ N(0, 0.1²), w2a = 0 and trains a and b. */
function lohaTensors(plan: ModulePlan, seed: number, progress: number): ModuleTensors {
	const {module, rank} = plan;
	const n = module.in * module.kernel * module.kernel;
	const random = new SampleRandom(seed, module.name);
	const growth = 0.4 + (0.6 * progress);
	return new Map([
		['hada_w1_a', gaussianMatrix(random, module.out, rank, 0.1, 0.3)],
		['hada_w1_b', gaussianMatrix(random, rank, n, 1)],
		['hada_w2_a', gaussianMatrix(random, module.out, rank, 2e-3 * growth, 0.5)],
		['hada_w2_b', gaussianMatrix(random, rank, n, 1)],
	]);
}

/** LoKr with both Kronecker factors low-rank (`lokr_w1_a·lokr_w1_b`, `lokr_w2_a·lokr_w2_b`), conv flattened, as LyCORIS writes in kohya naming. */
function lokrTensors(plan: ModulePlan, seed: number, progress: number): ModuleTensors {
	const {module, rank} = plan;
	const [a, b] = factorPair(module.out);
	const [c, d] = factorPair(module.in * module.kernel * module.kernel);
	const random = new SampleRandom(seed, module.name);
	const scale = 0.07 * Math.sqrt(0.4 + (0.6 * progress));
	return new Map([
		['lokr_w1_a', gaussianMatrix(random, a, rank, scale, 0.3)],
		['lokr_w1_b', gaussianMatrix(random, rank, c, scale)],
		['lokr_w2_a', gaussianMatrix(random, b, rank, scale, 0.3)],
		['lokr_w2_b', gaussianMatrix(random, rank, d, scale)],
	]);
}

function tensorSuffix(plan: ModulePlan, role: string): string {
	if (role === 'alpha') {
		return 'alpha';
	}

	if (plan.algo === 'lora') {
		if (plan.naming === 'peft') {
			return role === 'down' ? 'lora_A.weight' : 'lora_B.weight';
		}

		return role === 'down' ? 'lora_down.weight' : 'lora_up.weight';
	}

	return role;
}

function tensorShapes(plan: ModulePlan): Array<[string, number[]]> {
	const {module, rank} = plan;
	const n = module.in * module.kernel * module.kernel;
	const shapes: Array<[string, number[]]> = plan.naming === 'kohya' ? [['alpha', []]] : [];
	switch (plan.algo) {
		case 'lora': {
			if (module.conv) {
				shapes.push(['down', [rank, module.in, module.kernel, module.kernel]], ['up', [module.out, rank, 1, 1]]);
			} else {
				shapes.push(['down', [rank, module.in]], ['up', [module.out, rank]]);
			}

			break;
		}

		case 'loha': {
			shapes.push(['hada_w1_a', [module.out, rank]], ['hada_w1_b', [rank, n]], ['hada_w2_a', [module.out, rank]], ['hada_w2_b', [rank, n]]);
			break;
		}

		case 'lokr': {
			const [a, b] = factorPair(module.out);
			const [c, d] = factorPair(n);
			shapes.push(['lokr_w1_a', [a, rank]], ['lokr_w1_b', [rank, c]], ['lokr_w2_a', [b, rank]], ['lokr_w2_b', [rank, d]]);
			break;
		}
	}

	return shapes;
}

function moduleTensors(plan: ModulePlan, seed: number, progress: number, spectra?: Record<string, number[]>): ModuleTensors {
	let tensors: ModuleTensors;
	switch (plan.algo) {
		case 'lora': {
			tensors = loraTensors(plan, seed, progress, spectra);
			break;
		}

		case 'loha': {
			tensors = lohaTensors(plan, seed, progress);
			break;
		}

		case 'lokr': {
			tensors = lokrTensors(plan, seed, progress);
			break;
		}
	}

	if (plan.naming === 'kohya') {
		tensors.set('alpha', Float32Array.of(plan.alpha));
	}

	return tensors;
}

// ---------------------------------------------------------------- sample plans

type KindDefaults = {rank: number; alpha: number; convRank?: number; convAlpha?: number};

const kindDefaults: Record<SampleKind, KindDefaults> = {
	'sd15-lora': {rank: 8, alpha: 4},
	'sd15-locon': {rank: 4, alpha: 2, convRank: 4, convAlpha: 1},
	'sdxl-lora': {rank: 2, alpha: 1},
	'flux-lora': {rank: 2, alpha: 1},
	'sd15-loha': {rank: 4, alpha: 1},
	'sd15-lokr': {rank: 4, alpha: 4, convRank: 4, convAlpha: 4},
	'flux-peft': {rank: 4, alpha: 8},
	'sd15-epoch': {rank: 2, alpha: 1},
};

function dirs(...entries: Array<[number, string, number]>): DatasetDir[] {
	return entries.map(([repeats, name, images]) => ({dir: `${repeats}_${name}`, repeats, images}));
}

function planSample(kind: SampleKind, options: SampleOptions): SamplePlan {
	const defaults = kindDefaults[kind];
	const rank = options.rank ?? defaults.rank;
	const alpha = options.alpha ?? defaults.alpha;
	const convRank = options.convRank ?? defaults.convRank ?? rank;
	const convAlpha = options.convAlpha ?? defaults.convAlpha ?? alpha;
	const seed = options.seed ?? defaultSeed;
	const textEncoder = options.textEncoder ?? true;
	const epochs = options.epochs ?? (kind === 'sd15-epoch' ? 4 : 10);
	const epoch = Math.min(epochs, Math.max(1, options.epoch ?? epochs));
	const progress = epoch / epochs;
	// Run-level randomness (dates, session id, tags) depends on the seed and kind only, so
	// every epoch of a series shares one session.
	const runRandom = new SampleRandom(seed, `run:${kind}`);
	const plans = (modules: SampleModule[], algo: Algo, naming: Naming, zeroPrefixes: string[] = []): ModulePlan[] => modules.map(module => {
		const isConvKxk = module.conv && module.kernel > 1;
		return {
			module,
			algo,
			naming,
			rank: isConvKxk ? convRank : rank,
			alpha: isConvKxk ? convAlpha : alpha,
			zero: zeroPrefixes.some(prefix => module.name.startsWith(prefix)),
		};
	});
	const sd15Run = (overrides: Partial<KohyaRun>): KohyaRun => ({
		arch: 'sd15',
		networkModule: 'networks.lora',
		rank,
		alpha,
		outputName: options.outputName ?? 'aria_lsc',
		trigger: 'aria_lsc',
		dirs: dirs([10, 'aria_lsc', 38], [4, 'aria_lsc casual', 21]),
		optimizer: 'bitsandbytes.optim.adamw.AdamW8bit',
		learningRate: 1e-4,
		unetLr: 1e-4,
		textEncoderLr: textEncoder ? 5e-5 : null,
		scheduler: 'cosine_with_restarts',
		batchSize: 2,
		epochs,
		epoch,
		mixedPrecision: 'fp16',
		clipSkip: 2,
		noiseOffset: 0.0357,
		minSnrGamma: 5,
		secondsPerEpoch: 372,
		...overrides,
	});
	// sd-scripts never trains the last CLIP layer with clip skip 2: its up stays exactly zero.
	const sd15Zero = ['lora_te_text_model_encoder_layers_11_'];
	let modules: ModulePlan[];
	let metadata: Record<string, string>;
	switch (kind) {
		case 'sd15-lora': {
			modules = plans(sd15Modules({textEncoder}), 'lora', 'kohya', sd15Zero);
			metadata = kohyaMetadata(sd15Run({comment: 'trigger word: aria_lsc'}), runRandom);
			break;
		}

		case 'sd15-locon': {
			modules = plans(sd15Modules({conv: true, textEncoder}), 'lora', 'kohya', sd15Zero);
			metadata = kohyaMetadata(sd15Run({
				outputName: options.outputName ?? 'watercolor_wash',
				trigger: 'wtrclr style',
				styleTags: ['watercolor (medium)', 'traditional media', 'painting (medium)'],
				dirs: dirs([6, 'wtrclr style', 112]),
				networkArgs: {conv_dim: String(convRank), conv_alpha: String(convAlpha)},
				optimizer: 'bitsandbytes.optim.lion.Lion8bit(weight_decay=0.01)',
				learningRate: 3e-5,
				unetLr: 3e-5,
				textEncoderLr: textEncoder ? 1.5e-5 : null,
				scheduler: 'cosine',
				warmupSteps: 120,
				batchSize: 4,
				comment: null,
			}), runRandom);
			break;
		}

		case 'sdxl-lora': {
			modules = plans(sdxlModules({textEncoder}), 'lora', 'kohya', ['lora_te1_text_model_encoder_layers_11_']);
			metadata = kohyaMetadata({
				arch: 'sdxl',
				networkModule: 'networks.lora',
				rank,
				alpha,
				outputName: options.outputName ?? 'inkwash_xl',
				trigger: 'inkwash',
				styleTags: ['ink wash painting', 'monochrome', 'greyscale', 'traditional media'],
				dirs: dirs([5, 'inkwash', 64], [2, 'inkwash landscapes', 30]),
				optimizer: 'prodigyopt.prodigy.Prodigy(decouple=True,weight_decay=0.01,use_bias_correction=True,safeguard_warmup=True,d_coef=2)',
				learningRate: 1,
				unetLr: 1,
				textEncoderLr: textEncoder ? 1 : null,
				scheduler: 'constant',
				batchSize: 1,
				epochs,
				epoch,
				mixedPrecision: 'bf16',
				clipSkip: null,
				noiseOffset: null,
				minSnrGamma: 5,
				comment: null,
				secondsPerEpoch: 1810,
			}, runRandom);
			break;
		}

		case 'flux-lora': {
			modules = plans(fluxKohyaModules(), 'lora', 'kohya');
			metadata = kohyaMetadata({
				arch: 'flux',
				networkModule: 'networks.lora_flux',
				rank,
				alpha,
				outputName: options.outputName ?? 'retro_poster_flux',
				trigger: 'rtr0 poster',
				styleTags: ['retro artstyle', 'poster (medium)', 'halftone'],
				dirs: dirs([3, 'rtr0 poster', 45]),
				networkArgs: {train_blocks: 'all'},
				optimizer: 'bitsandbytes.optim.adamw.AdamW8bit',
				learningRate: 1e-4,
				unetLr: 1e-4,
				textEncoderLr: null,
				scheduler: 'constant_with_warmup',
				warmupSteps: 50,
				batchSize: 1,
				epochs: 16,
				epoch: Math.min(16, epoch),
				mixedPrecision: 'bf16',
				clipSkip: null,
				noiseOffset: null,
				minSnrGamma: null,
				comment: null,
				secondsPerEpoch: 640,
			}, runRandom);
			break;
		}

		case 'sd15-loha': {
			// LyCORIS preset attn-mlp: attention and feed-forward layers, no 1×1 projections.
			const targets = sd15Modules({textEncoder}).filter(m => !/_proj_(in|out)$/.test(m.name));
			modules = plans(targets, 'loha', 'kohya', sd15Zero);
			metadata = kohyaMetadata(sd15Run({
				networkModule: 'lycoris.kohya',
				networkArgs: {preset: 'attn-mlp', algo: 'loha'},
				outputName: options.outputName ?? 'paper_cutout_loha',
				trigger: 'papercut',
				styleTags: ['paper cutout', 'layered paper', 'papercraft'],
				dirs: dirs([8, 'papercut', 52]),
				learningRate: 2e-4,
				unetLr: 2e-4,
				textEncoderLr: textEncoder ? 1e-4 : null,
				comment: null,
			}), runRandom);
			break;
		}

		case 'sd15-lokr': {
			modules = plans(sd15Modules({conv: true, textEncoder}), 'lokr', 'kohya');
			metadata = kohyaMetadata(sd15Run({
				networkModule: 'lycoris.kohya',
				networkArgs: {conv_rank: String(convRank), conv_alpha: String(convAlpha), algo: 'lokr'},
				outputName: options.outputName ?? 'kestrel_lokr',
				trigger: 'kestrel_lsc',
				dirs: dirs([16, 'kestrel_lsc', 43], [4, 'kestrel_lsc', 45]),
				optimizer: 'lion_pytorch.lion_pytorch.Lion(weight_decay=0.1)',
				learningRate: 3e-4,
				unetLr: 3e-4,
				textEncoderLr: textEncoder ? 1.5e-4 : null,
				clipSkip: null,
				comment: 'trigger word is kestrel_lsc',
			}), runRandom);
			break;
		}

		case 'flux-peft': {
			modules = plans(fluxPeftModules().filter(m => m.name.startsWith('transformer.transformer_blocks.')), 'lora', 'peft');
			metadata = peftMetadata('transformer', rank, alpha, ['attn.to_k', 'attn.to_q', 'attn.to_v', 'attn.to_out.0']);
			metadata['training_info'] = pyJson({step: 1500, epoch: 12});
			break;
		}

		case 'sd15-epoch': {
			modules = plans(sd15Modules({textEncoder}), 'lora', 'kohya', sd15Zero);
			const outputName = options.outputName ?? 'mira_lsc';
			metadata = kohyaMetadata(sd15Run({
				outputName,
				trigger: 'mira_lsc',
				dirs: dirs([12, 'mira_lsc', 30]),
				optimizer: 'bitsandbytes.optim.adamw.AdamW8bit',
				comment: null,
				secondsPerEpoch: 240,
			}), runRandom);
			break;
		}
	}

	return {modules, metadata, dtype: options.dtype ?? 'F16', seed, progress};
}

function tensorPlans(plan: SamplePlan): TensorPlan[] {
	const entries: TensorPlan[] = [];
	for (const modulePlan of plan.modules) {
		for (const [role, shape] of tensorShapes(modulePlan)) {
			entries.push({name: `${modulePlan.module.name}.${tensorSuffix(modulePlan, role)}`, shape, plan: modulePlan, role});
		}
	}

	// safetensors' Python writer lays tensors out by name (all share one dtype here).
	return entries.sort((a, b) => compareCodePoints(a.name, b.name));
}

/**
 * Tensors with lazy loaders: a module's tensors are generated when the writer first asks for one
 * of them and kept only until its last tensor is written, so memory stays at one module.
 */
function lazyTensors(plan: SamplePlan, spectra?: Record<string, number[]>): TensorToWrite[] {
	const entries = tensorPlans(plan);
	const perModule = new Map<ModulePlan, number>();
	for (const entry of entries) {
		perModule.set(entry.plan, (perModule.get(entry.plan) ?? 0) + 1);
	}

	const cache = new Map<ModulePlan, {tensors: ModuleTensors; served: number}>();
	return entries.map(entry => ({
		name: entry.name,
		dtype: plan.dtype,
		shape: entry.shape,
		async data() {
			let cached = cache.get(entry.plan);
			if (!cached) {
				cached = {tensors: moduleTensors(entry.plan, plan.seed, plan.progress, spectra), served: 0};
				cache.set(entry.plan, cached);
			}

			cached.served++;
			if (cached.served === perModule.get(entry.plan)) {
				cache.delete(entry.plan);
			}

			return encodeFromFloat32(cached.tensors.get(entry.role)!, plan.dtype);
		},
	}));
}

/** Generate one sample in memory (use writeSample for large ones). */
export async function generateSample(kind: SampleKind, options: SampleOptions = {}): Promise<GeneratedSample> {
	const plan = planSample(kind, options);
	const spectra: Record<string, number[]> = {};
	const lazy = lazyTensors(plan, spectra);
	const tensors: TensorToWrite[] = [];
	for (const tensor of lazy) {
		tensors.push({...tensor, data: await (tensor.data as () => Promise<Uint8Array>)()});
	}

	const metadata = await withHashes(plan, tensors, options);
	return {tensors, metadata, spectra};
}

async function withHashes(plan: SamplePlan, tensors: TensorToWrite[], options: SampleOptions): Promise<Record<string, string>> {
	const metadata = {...plan.metadata};
	if ((options.hashes ?? true) && Object.keys(metadata).some(key => key.startsWith('ss_'))) {
		const hashes = await sshsHashesFor(tensors, metadata);
		metadata['sshs_model_hash'] = hashes.modelHash;
		metadata['sshs_legacy_hash'] = hashes.legacyHash;
	}

	return metadata;
}

/** Write one sample atomically; large ones stream module by module. */
export async function writeSample(target: string, kind: SampleKind, options: SampleOptions = {}): Promise<void> {
	const plan = planSample(kind, options);
	const bytes = tensorPlans(plan).reduce((sum, entry) => sum + (entry.shape.reduce((a, b) => a * b, 1) * dtypeSize[plan.dtype]), 0);
	// Hashing needs the data before the header is written: keep it in memory when that is modest.
	if ((options.hashes ?? true) && bytes <= 256 * 1024 * 1024) {
		const sample = await generateSample(kind, options);
		await writeSafetensorsAtomic(target, sample.tensors, sample.metadata, {overwrite: true});
		return;
	}

	await writeSafetensorsAtomic(target, lazyTensors(plan), plan.metadata, {overwrite: true});
}

/**
 * SDXL kohya LoRA, rank 32, alpha 16, fp16, UNet + both text encoders (~230 MB): the benchmark
 * input. Streamed, without sshs hashes (they would need a second pass over 230 MB).
 */
export async function writeSdxlBenchLora(target: string, options: {rank?: number; seed?: number} = {}): Promise<void> {
	const plan = planSample('sdxl-lora', {rank: options.rank ?? 32, alpha: 16, seed: options.seed ?? 2, outputName: 'sdxl_bench_r32', hashes: false});
	await writeSafetensorsAtomic(target, lazyTensors(plan), plan.metadata, {overwrite: true});
}

/** The built-in sample set: file name (relative to the samples folder) → what to generate. */
export const builtInSamples: ReadonlyArray<{file: string; kind: SampleKind; options?: SampleOptions}> = [
	{file: 'aria_lsc-sd15-lora-r8.safetensors', kind: 'sd15-lora'},
	{file: 'watercolor_wash-sd15-locon-r4c4.safetensors', kind: 'sd15-locon'},
	{file: 'inkwash_xl-sdxl-lora-r2.safetensors', kind: 'sdxl-lora'},
	{file: 'retro_poster_flux-lora-r2.safetensors', kind: 'flux-lora'},
	{file: 'paper_cutout-sd15-loha-d4.safetensors', kind: 'sd15-loha', options: {textEncoder: false}},
	{file: 'kestrel-sd15-lokr.safetensors', kind: 'sd15-lokr'},
	{file: 'flux_peft-transformer-r4.safetensors', kind: 'flux-peft'},
	// kohya names intermediate saves <output>-<epoch:06d> and the last one <output>.
	{file: 'mira_lsc-epochs/mira_lsc-000001.safetensors', kind: 'sd15-epoch', options: {epoch: 1}},
	{file: 'mira_lsc-epochs/mira_lsc-000002.safetensors', kind: 'sd15-epoch', options: {epoch: 2}},
	{file: 'mira_lsc-epochs/mira_lsc-000003.safetensors', kind: 'sd15-epoch', options: {epoch: 3}},
	{file: 'mira_lsc-epochs/mira_lsc.safetensors', kind: 'sd15-epoch', options: {epoch: 4}},
];

export const samplesFolderName = 'samples-v1';
const completeMarker = '.complete';

async function exists(target: string): Promise<boolean> {
	try {
		await stat(target);
		return true;
	} catch {
		return false;
	}
}

/**
 * Generate the built-in samples once into `<cacheDir>/samples-v1` and return that folder. The set
 * is built in a temporary sibling folder and renamed into place, so an interrupted or concurrent
 * first run never leaves a half-written set behind.
 */
export async function ensureSamples(cacheDir: string): Promise<string> {
	const folder = path.join(cacheDir, samplesFolderName);
	if (await exists(path.join(folder, completeMarker))) {
		return folder;
	}

	await mkdir(cacheDir, {recursive: true});
	const building = path.join(cacheDir, `.${samplesFolderName}.building-${process.pid}-${Date.now()}`);
	await mkdir(building, {recursive: true});
	try {
		for (const sample of builtInSamples) {
			const target = path.join(building, sample.file);
			await mkdir(path.dirname(target), {recursive: true});
			await writeSample(target, sample.kind, sample.options);
		}

		await writeFile(path.join(building, completeMarker), `${builtInSamples.length} samples\n`);
		if (await exists(folder)) {
			// A stale incomplete set (no marker) from an older crash: replace it.
			if (await exists(path.join(folder, completeMarker))) {
				return folder;
			}

			await rm(folder, {recursive: true, force: true});
		}

		try {
			await rename(building, folder);
		} catch (error) {
			if (await exists(path.join(folder, completeMarker))) {
				return folder; // Another process won the race.
			}

			throw error;
		}

		return folder;
	} finally {
		await rm(building, {recursive: true, force: true}).catch(() => undefined);
		await removeStaleBuilds(cacheDir);
	}
}

async function removeStaleBuilds(cacheDir: string): Promise<void> {
	let names: string[];
	try {
		names = await readdir(cacheDir);
	} catch {
		return;
	}

	const now = Date.now();
	for (const name of names) {
		const match = new RegExp(`^\\.${samplesFolderName}\\.building-(\\d+)-(\\d+)$`).exec(name);
		if (match && now - Number(match[2]) > 10 * 60_000) {
			await rm(path.join(cacheDir, name), {recursive: true, force: true}).catch(() => undefined);
		}
	}
}
