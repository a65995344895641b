// Training metadata for the sample generator, written the way sd-scripts writes it: every value
// passes through Python's str(), so floats print as Python does ("1.0", "5e-05"), unset values
// are "None", booleans "True"/"False", and nested data is json.dumps output (", " and ": "
// separators, non-ASCII escaped as \uXXXX).
import type {SampleRandom} from './sample-random.js';

/** A Python float literal: what str(float) prints. */
export class PyFloat {
	readonly value: number;

	constructor(value: number) {
		this.value = value;
	}
}

export function pyFloat(value: number): string {
	if (!Number.isFinite(value)) {
		return Number.isNaN(value) ? 'nan' : (value > 0 ? 'inf' : '-inf');
	}

	if (Number.isInteger(value) && Math.abs(value) < 1e16) {
		return value.toFixed(1);
	}

	const magnitude = Math.abs(value);
	if (magnitude < 1e-4 || magnitude >= 1e16) {
		// JS "5e-5" → Python "5e-05": the exponent has at least two digits.
		const [mantissa, exponent] = value.toExponential().split('e') as [string, string];
		const sign = exponent.startsWith('-') ? '-' : '+';
		const digits = exponent.replace(/^[+-]/, '').padStart(2, '0');
		return `${mantissa}e${sign}${digits}`;
	}

	return String(value);
}

type PyValue = string | number | boolean | null | PyFloat | PyValue[] | {[key: string]: PyValue};

function pyJsonString(text: string): string {
	// json.dumps' default ensure_ascii escapes every non-ASCII UTF-16 unit.
	return JSON.stringify(text).replaceAll(/[\u0080-\uFFFF]/g, ch => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Python's json.dumps(value) with default separators. */
export function pyJson(value: PyValue): string {
	if (value === null) {
		return 'null';
	}

	if (value instanceof PyFloat) {
		return pyFloat(value.value);
	}

	if (Array.isArray(value)) {
		return `[${value.map(item => pyJson(item)).join(', ')}]`;
	}

	switch (typeof value) {
		case 'string': {
			return pyJsonString(value);
		}

		case 'number': {
			return String(value);
		}

		case 'boolean': {
			return value ? 'true' : 'false';
		}

		default: {
			return `{${Object.entries(value).map(([key, item]) => `${pyJsonString(key)}: ${pyJson(item)}`).join(', ')}}`;
		}
	}
}

/** Python's str() of a metadata value. */
function pyStr(value: string | number | boolean | null | PyFloat): string {
	if (value === null) {
		return 'None';
	}

	if (value instanceof PyFloat) {
		return pyFloat(value.value);
	}

	if (typeof value === 'boolean') {
		return value ? 'True' : 'False';
	}

	return String(value);
}

export type DatasetDir = {dir: string; repeats: number; images: number};

/** Booru-style caption tags; a few non-ASCII ones, as real datasets have. */
const tagPool = [
	'1girl', 'solo', 'looking at viewer', 'smile', 'long hair', 'blush', 'open mouth', 'short hair', 'blue eyes',
	'simple background', 'white background', 'shirt', 'skirt', 'hat', 'brown hair', 'upper body', 'outdoors',
	'school uniform', 'holding', 'jewelry', 'standing', 'full body', 'sky', 'day', 'cloud', 'tree', 'closed mouth',
	'bangs', 'hair ornament', 'long sleeves', 'dress', 'black hair', 'red eyes', 'twintails', 'ribbon', 'bow',
	'earrings', 'collarbone', 'jacket', 'white shirt', 'pleated skirt', 'thighhighs', 'sitting', 'indoors',
	'from side', 'portrait', 'smile \\(expression\\)', 'hand up', 'blurry background', 'depth of field',
	'sunlight', 'window', 'flower', 'night', 'star \\(sky\\)', 'café', 'ハート', 'scarf', 'gloves', 'boots',
	'cowboy shot', 'wind', 'petals', 'cherry blossoms', 'building', 'city', 'water', 'reflection', 'umbrella',
	'rain', 'book', 'cup', 'food', 'animal ears', 'tail', 'wings',
];

/**
 * ss_tag_frequency as sd-scripts counts it: per dataset dir, one count per caption that has the
 * tag (not multiplied by repeats). The trigger word heads every caption.
 */
export function tagFrequency(random: SampleRandom, dirs: readonly DatasetDir[], trigger: string, styleTags: readonly string[] = []): Record<string, Record<string, number>> {
	const result: Record<string, Record<string, number>> = {};
	// Character sets (no style tags) are mostly solo portraits of one girl: those tags lead.
	const leadTags = styleTags.length === 0 ? ['1girl', 'solo', 'looking at viewer'] : [];
	for (const {dir, images} of dirs) {
		const counts: Record<string, number> = {[trigger]: images};
		for (const tag of styleTags) {
			counts[tag] = Math.max(1, Math.round(images * random.uniform(0.55, 0.95)));
		}

		for (const [rank, tag] of leadTags.entries()) {
			counts[tag] = Math.max(1, Math.round(images * (0.98 - (0.12 * rank)) * random.uniform(0.95, 1)));
		}

		const wanted = 28 + Math.floor(random.next() * 18);
		const chosen = random.shuffle(tagPool.filter(tag => !(tag in counts))).slice(0, wanted);
		for (const [rank, tag] of chosen.entries()) {
			const share = 0.97 * Math.exp(-rank / 9) * random.uniform(0.8, 1.1);
			counts[tag] = Math.max(1, Math.min(images, Math.round(images * share)));
		}

		result[dir] = counts;
	}

	return result;
}

export type KohyaRun = {
	arch: 'sd15' | 'sdxl' | 'flux';
	networkModule: string;
	rank: number;
	alpha: number;
	networkArgs?: Record<string, string>;
	outputName: string;
	trigger: string;
	styleTags?: string[];
	dirs: DatasetDir[];
	optimizer: string;
	learningRate: number;
	unetLr: number | null;
	textEncoderLr: number | null;
	scheduler: string;
	warmupSteps?: number;
	batchSize: number;
	epochs: number;
	/** Epoch this file was saved at (default: the last). */
	epoch?: number;
	mixedPrecision: 'fp16' | 'bf16';
	clipSkip?: number | null;
	noiseOffset?: number | null;
	minSnrGamma?: number | null;
	comment?: string | null;
	/** Seconds of training per epoch (for started/finished times). */
	secondsPerEpoch: number;
};

const baseModels = {
	sd15: {name: 'v1-5-pruned-emaonly.safetensors', version: 'sd_v1', architecture: 'stable-diffusion-v1/lora', implementation: 'diffusers', resolution: [512, 512]},
	sdxl: {name: 'sd_xl_base_1.0.safetensors', version: 'sdxl_base_v1-0', architecture: 'stable-diffusion-xl-v1-base/lora', implementation: 'https://github.com/Stability-AI/generative-models', resolution: [1024, 1024]},
	flux: {name: 'flux1-dev.safetensors', version: 'flux1', architecture: 'flux-1-dev/lora', implementation: 'https://github.com/black-forest-labs/flux', resolution: [1024, 1024]},
} as const;

function fakeHex(random: SampleRandom, length: number): string {
	let text = '';
	while (text.length < length) {
		text += Math.floor(random.next() * 0x1_00_00_00_00).toString(16).padStart(8, '0');
	}

	return text.slice(0, length);
}

function bucketInfo(random: SampleRandom, arch: KohyaRun['arch'], total: number): PyValue {
	const shapes = arch === 'sd15'
		? [[384, 640], [448, 576], [512, 512], [576, 448], [640, 384]]
		: [[832, 1216], [896, 1152], [1024, 1024], [1152, 896], [1216, 832]];
	const weights = shapes.map(() => random.uniform(0.2, 1));
	const sum = weights.reduce((a, b) => a + b, 0);
	let left = total;
	const buckets: Record<string, PyValue> = {};
	for (const [index, resolution] of shapes.entries()) {
		const count = index === shapes.length - 1 ? left : Math.min(left, Math.round(total * weights[index]! / sum));
		left -= count;
		buckets[String(index)] = {resolution: resolution!, count};
	}

	return {buckets, mean_img_ar_error: new PyFloat(Math.round(random.uniform(0.01, 0.06) * 1e6) / 1e6)};
}

/**
 * The ss_* and modelspec.* metadata sd-scripts' train_network.py writes, in its order. Dates,
 * session id and hashes come from `random`, so one run (same random state) gives one session.
 */
export function kohyaMetadata(run: KohyaRun, random: SampleRandom): Record<string, string> {
	const base = baseModels[run.arch];
	const epoch = run.epoch ?? run.epochs;
	const trainImages = run.dirs.reduce((sum, d) => sum + (d.repeats * d.images), 0);
	const batchesPerEpoch = Math.ceil(trainImages / run.batchSize) + (run.batchSize > 1 ? run.dirs.length : 0);
	const maxSteps = batchesPerEpoch * run.epochs;
	const started = 1_709_370_000 + Math.floor(random.next() * 86_400 * 60) + (Math.floor(random.next() * 1e7) / 1e7);
	const sessionId = Math.floor(random.next() * 0x1_00_00_00_00);
	const commit = fakeHex(random, 40);
	const modelHash = fakeHex(random, 64);
	const legacyModelHash = fakeHex(random, 8);
	const seed = Math.floor(random.next() * 4_294_967_295);
	const tags = tagFrequency(random, run.dirs, run.trigger, run.styleTags);
	const buckets = bucketInfo(random, run.arch, trainImages);
	const values: Array<[string, string | number | boolean | null | PyFloat]> = [
		['ss_session_id', sessionId],
		['ss_training_started_at', new PyFloat(started)],
		['ss_output_name', run.outputName],
		['ss_learning_rate', new PyFloat(run.learningRate)],
		['ss_text_encoder_lr', run.textEncoderLr === null ? null : new PyFloat(run.textEncoderLr)],
		['ss_unet_lr', run.unetLr === null ? null : new PyFloat(run.unetLr)],
		['ss_num_train_images', trainImages],
		['ss_num_reg_images', 0],
		['ss_num_batches_per_epoch', batchesPerEpoch],
		['ss_num_epochs', run.epochs],
		['ss_gradient_checkpointing', run.arch !== 'sd15'],
		['ss_gradient_accumulation_steps', 1],
		['ss_max_train_steps', maxSteps],
		['ss_lr_warmup_steps', run.warmupSteps ?? 0],
		['ss_lr_scheduler', run.scheduler],
		['ss_network_module', run.networkModule],
		['ss_network_dim', run.rank],
		['ss_network_alpha', new PyFloat(run.alpha)],
		['ss_network_dropout', null],
		['ss_mixed_precision', run.mixedPrecision],
		['ss_full_fp16', false],
		['ss_v2', false],
		['ss_base_model_version', base.version],
		['ss_clip_skip', run.clipSkip ?? null],
		['ss_max_token_length', run.arch === 'sd15' ? 225 : null],
		['ss_cache_latents', true],
		['ss_seed', seed],
		['ss_lowram', false],
		['ss_noise_offset', run.noiseOffset === undefined || run.noiseOffset === null ? null : new PyFloat(run.noiseOffset)],
		['ss_multires_noise_iterations', null],
		['ss_multires_noise_discount', new PyFloat(0.3)],
		['ss_adaptive_noise_scale', null],
		['ss_zero_terminal_snr', false],
		['ss_training_comment', run.comment ?? null],
		['ss_sd_scripts_commit_hash', commit],
		['ss_optimizer', run.optimizer],
		['ss_max_grad_norm', new PyFloat(1)],
		['ss_caption_dropout_rate', new PyFloat(0)],
		['ss_caption_dropout_every_n_epochs', 0],
		['ss_caption_tag_dropout_rate', new PyFloat(0)],
		['ss_face_crop_aug_range', null],
		['ss_prior_loss_weight', new PyFloat(1)],
		['ss_min_snr_gamma', run.minSnrGamma === undefined || run.minSnrGamma === null ? null : new PyFloat(run.minSnrGamma)],
		['ss_scale_weight_norms', null],
		['ss_ip_noise_gamma', null],
		['ss_debiased_estimation', false],
		['ss_noise_offset_random_strength', false],
		['ss_ip_noise_gamma_random_strength', false],
		['ss_loss_type', 'l2'],
		['ss_huber_schedule', 'snr'],
		['ss_huber_c', new PyFloat(0.1)],
		['ss_batch_size_per_device', run.batchSize],
		['ss_total_batch_size', run.batchSize],
		['ss_resolution', `(${base.resolution[0]}, ${base.resolution[1]})`],
		['ss_color_aug', false],
		['ss_flip_aug', false],
		['ss_random_crop', false],
		['ss_shuffle_caption', true],
		['ss_enable_bucket', true],
		['ss_bucket_no_upscale', true],
		['ss_min_bucket_reso', 256],
		['ss_max_bucket_reso', run.arch === 'sd15' ? 1024 : 2048],
		['ss_keep_tokens', 1],
	];
	const metadata: Record<string, string> = {};
	for (const [key, value] of values) {
		metadata[key] = pyStr(value);
	}

	metadata['ss_dataset_dirs'] = pyJson(Object.fromEntries(run.dirs.map(d => [d.dir, {n_repeats: d.repeats, img_count: d.images}])));
	metadata['ss_reg_dataset_dirs'] = pyJson({});
	metadata['ss_tag_frequency'] = pyJson(tags);
	metadata['ss_bucket_info'] = pyJson(buckets);
	if (run.networkArgs) {
		metadata['ss_network_args'] = pyJson(run.networkArgs);
	}

	if (run.arch === 'flux') {
		Object.assign(metadata, {
			ss_apply_t5_attn_mask: 'False',
			ss_weighting_scheme: 'logit_normal',
			ss_logit_mean: '0.0',
			ss_logit_std: '1.0',
			ss_mode_scale: '1.29',
			ss_guidance_scale: '1.0',
			ss_timestep_sampling: 'shift',
			ss_sigmoid_scale: '1.0',
			ss_model_prediction_type: 'raw',
			ss_discrete_flow_shift: '3.1582',
		});
	}

	metadata['ss_sd_model_hash'] = legacyModelHash;
	metadata['ss_new_sd_model_hash'] = modelHash;
	metadata['ss_sd_model_name'] = base.name;
	metadata['ss_training_finished_at'] = pyFloat(started + (run.secondsPerEpoch * epoch) + 0.25);
	metadata['ss_steps'] = String(batchesPerEpoch * epoch);
	metadata['ss_epoch'] = String(epoch);
	metadata['modelspec.sai_model_spec'] = '1.0.0';
	metadata['modelspec.architecture'] = base.architecture;
	metadata['modelspec.implementation'] = base.implementation;
	metadata['modelspec.title'] = run.outputName;
	metadata['modelspec.author'] = 'lorascope samples (synthetic)';
	metadata['modelspec.description'] = 'Synthetic LoRA generated by lorascope; weights have a prescribed decaying spectrum.';
	metadata['modelspec.resolution'] = `${base.resolution[0]}x${base.resolution[1]}`;
	if (run.arch !== 'flux') {
		metadata['modelspec.prediction_type'] = 'epsilon';
	}

	metadata['modelspec.date'] = new Date(Math.floor(started) * 1000).toISOString().slice(0, 19);
	if (run.clipSkip) {
		metadata['modelspec.encoder_layer'] = String(run.clipSkip);
	}

	return metadata;
}

/** diffusers' safetensors metadata for a PEFT LoRA: format + lora_adapter_metadata (indent 2, sorted keys). */
export function peftMetadata(component: string, rank: number, alpha: number, targetModules: readonly string[]): Record<string, string> {
	const config: Record<string, unknown> = {
		[`${component}.alpha_pattern`]: {},
		[`${component}.bias`]: 'none',
		[`${component}.init_lora_weights`]: 'gaussian',
		[`${component}.lora_alpha`]: alpha,
		[`${component}.lora_bias`]: false,
		[`${component}.r`]: rank,
		[`${component}.rank_pattern`]: {},
		[`${component}.target_modules`]: [...targetModules].sort(),
		[`${component}.use_dora`]: false,
		[`${component}.use_rslora`]: false,
	};
	const sorted = Object.fromEntries(Object.entries(config).sort(([a], [b]) => (a < b ? -1 : (a > b ? 1 : 0))));
	return {format: 'pt', lora_adapter_metadata: JSON.stringify(sorted, null, 2)};
}
