// The training facts grouped the way users think about a run (base model, network, optimisation,
// noise and loss, dataset, run), each with a plain label and a one-line definition. The Overview tab and
// `inspect` both render from this table, so the two never disagree on wording.
//
// `format` returns null when the file does not record the value (the row is then hidden). Text that
// comes from the file is passed through sanitizeLine here already; callers still cut it to width.

import type {TrainingInfo} from './metadata.js';
import {sanitizeLine} from './sanitize.js';

export type TrainingField = {
	/** The ss_* (or modelspec.*) key the value comes from; `derived.*` for computed facts. */
	key: string;
	/** Plain words, e.g. "Text encoder LR". */
	label: string;
	/** One line saying what the value means. */
	definition: string;
	format: (t: TrainingInfo) => string | null;
};

export type TrainingGroup = {title: string; fields: TrainingField[]};

/** Learning rates in 1e-4 style: 0.0003 → "3e-4", 0.00015 → "1.5e-4", 1 → "1", 0.5 → "0.5". */
export function formatLr(v: number | null): string | null {
	if (v === null || !Number.isFinite(v)) {
		return null;
	}

	if (v === 0) {
		return '0';
	}

	if (Math.abs(v) < 0.01) {
		const [mantissa, exponent] = v.toExponential(3).split('e');
		return `${String(Number(mantissa))}e${Number(exponent)}`;
	}

	return String(Number(v.toPrecision(4)));
}

/** Plain numbers: integers as is, others to 4 significant digits. */
export function formatNumber(v: number | null): string | null {
	if (v === null || !Number.isFinite(v)) {
		return null;
	}

	if (Number.isInteger(v)) {
		return String(v);
	}

	return Math.abs(v) < 0.001 ? formatLr(v) : String(Number(v.toPrecision(4)));
}

/** Durations: "45s", "12m 5s", "1h 23m", "2d 3h". */
export function formatDuration(seconds: number | null): string | null {
	if (seconds === null || !Number.isFinite(seconds) || seconds < 0) {
		return null;
	}

	const s = Math.round(seconds);
	if (s < 60) {
		return `${s}s`;
	}

	if (s < 3600) {
		return `${Math.floor(s / 60)}m ${s % 60}s`;
	}

	if (s < 86_400) {
		return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
	}

	return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

function pad(n: number): string {
	return String(n).padStart(2, '0');
}

/** Dates as ISO-style local time: "2023-04-05 19:01". */
export function formatDate(d: Date | null): string | null {
	if (d === null || Number.isNaN(d.getTime())) {
		return null;
	}

	return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function formatBool(v: boolean | null): string | null {
	return v === null ? null : v ? 'yes' : 'no';
}

export function formatResolution(r: [number, number] | null): string | null {
	return r === null ? null : `${r[0]}x${r[1]}`;
}

/** File text on one line, made inert; width is the caller's business. */
export function formatText(v: string | null): string | null {
	return v === null ? null : sanitizeLine(v);
}

function formatDim(v: number | 'Dynamic' | null): string | null {
	return v === 'Dynamic' ? 'Dynamic (varies per module)' : formatNumber(v);
}

function formatArgs(args: Record<string, unknown> | null): string | null {
	if (!args) {
		return null;
	}

	const parts = Object.entries(args).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v) ?? String(v)}`);
	return parts.length === 0 ? null : sanitizeLine(parts.join(', '), 400);
}

function formatEpoch(t: TrainingInfo): string | null {
	if (t.epoch === null) {
		return t.numEpochs === null ? null : `${t.numEpochs} planned`;
	}

	return t.numEpochs === null ? String(t.epoch) : `${t.epoch} of ${t.numEpochs}`;
}

function formatSteps(t: TrainingInfo): string | null {
	const done = t.derived.totalSteps;
	if (done === null) {
		return null;
	}

	const estimated = t.steps === null && done !== t.maxTrainSteps ? ' (estimated)' : '';
	return t.maxTrainSteps !== null && t.maxTrainSteps !== done ? `${done} of ${t.maxTrainSteps}${estimated}` : `${done}${estimated}`;
}

function formatBuckets(t: TrainingInfo): string | null {
	if (t.buckets.length === 0) {
		return t.enableBucket === null ? null : t.enableBucket ? 'on' : 'off';
	}

	const sides = t.buckets.flatMap(b => b.resolution);
	const images = t.buckets.reduce((sum, b) => sum + b.count, 0);
	return `${t.buckets.length} buckets, ${Math.min(...sides)}–${Math.max(...sides)} px, ${images} images`;
}

function formatDirs(t: TrainingInfo, reg: boolean): string | null {
	const dirs = t.dataset.filter(d => d.isReg === reg);
	if (dirs.length === 0) {
		return null;
	}

	const shown = dirs.slice(0, 4).map(d => {
		const repeats = d.repeats === null ? '' : `${d.repeats}×`;
		const images = d.images === null ? '?' : String(d.images);
		return `${sanitizeLine(d.dir, 40)} (${repeats}${images})`;
	});
	return dirs.length > 4 ? `${shown.join(', ')} +${dirs.length - 4} more` : shown.join(', ');
}

function formatTags(t: TrainingInfo): string | null {
	if (t.tags.length === 0) {
		return null;
	}

	const dirs = new Set(t.tags.map(x => x.dir)).size;
	return `${t.mergedTags.length} distinct tags in ${dirs} dir${dirs === 1 ? '' : 's'}`;
}

function formatNoiseOffset(t: TrainingInfo): string | null {
	const v = formatNumber(t.noiseOffset);
	if (v === null) {
		return null;
	}

	return t.noiseOffsetRandomStrength ? `${v} (random strength)` : v;
}

function formatIpNoise(t: TrainingInfo): string | null {
	const v = formatNumber(t.ipNoiseGamma);
	if (v === null) {
		return null;
	}

	return t.ipNoiseGammaRandomStrength ? `${v} (random strength)` : v;
}

function formatHuber(t: TrainingInfo): string | null {
	if (t.lossType === null || !/huber|smooth/i.test(t.lossType)) {
		return null;
	}

	const parts = [
		t.huberSchedule === null ? null : `schedule ${sanitizeLine(t.huberSchedule, 30)}`,
		t.huberC === null ? null : `c ${formatNumber(t.huberC)}`,
		t.huberScale === null ? null : `scale ${formatNumber(t.huberScale)}`,
	].filter(p => p !== null);
	return parts.length === 0 ? null : parts.join(', ');
}

function formatModelHash(t: TrainingInfo): string | null {
	const parts = [t.sdModelHash, t.newSdModelHash === null ? null : t.newSdModelHash.slice(0, 12)].filter(p => p !== null);
	return parts.length === 0 ? null : sanitizeLine(parts.join(' / '), 80);
}

function formatSoftware(t: TrainingInfo): string | null {
	if (!t.software) {
		return null;
	}

	const version = t.software.version === null ? '' : ` ${t.software.version.slice(0, 12)}`;
	return sanitizeLine(`${t.software.name}${version}`, 80);
}

export const trainingGroups: TrainingGroup[] = [
	{
		title: 'Base model',
		fields: [
			{
				key: 'ss_base_model_version',
				label: 'Base model',
				definition: 'The model family the trainer says it trained on (sd_v1, sdxl_base_v1-0, flux1, …).',
				format: t => formatText(t.baseModelVersion),
			},
			{
				key: 'modelspec.architecture',
				label: 'Architecture',
				definition: 'The SAI model-spec architecture string, e.g. stable-diffusion-xl-v1-base/lora.',
				format: t => formatText(t.modelspec.architecture),
			},
			{
				key: 'ss_sd_model_name',
				label: 'Checkpoint',
				definition: 'File name of the checkpoint the LoRA was trained on.',
				format: t => formatText(t.sdModelName),
			},
			{
				key: 'ss_new_sd_model_hash',
				label: 'Checkpoint hash',
				definition: 'Hashes of that checkpoint (old 8-hex A1111 hash / start of its SHA-256).',
				format: formatModelHash,
			},
			{
				key: 'ss_vae_name',
				label: 'VAE',
				definition: 'A separate VAE used during training, if any.',
				format: t => formatText(t.vaeName),
			},
			{
				key: 'ss_v2',
				label: 'SD 2.x',
				definition: 'Whether the base model was Stable Diffusion 2.x.',
				format: t => formatBool(t.v2),
			},
			{
				key: 'ss_clip_skip',
				label: 'CLIP skip',
				definition: 'How many of the last text-encoder layers were skipped; use the same value when generating.',
				format: t => formatNumber(t.clipSkip),
			},
			{
				key: 'ss_max_token_length',
				label: 'Max token length',
				definition: 'Longest caption, in tokens, the text encoder was fed (75, 150 or 225).',
				format: t => formatNumber(t.maxTokenLength),
			},
			{
				key: 'ss_model_type',
				label: 'Model type',
				definition: 'Variant of the base model (Flux: dev, schnell, chroma).',
				format: t => formatText(t.modelType),
			},
		],
	},
	{
		title: 'Network',
		fields: [
			{
				key: 'ss_network_module',
				label: 'Network module',
				definition: 'The code that built the LoRA: networks.lora (kohya), lycoris.kohya (LyCORIS), networks.lora_flux, …',
				format: t => formatText(t.networkModule),
			},
			{
				key: 'ss_network_args',
				label: 'Network args',
				definition: 'Extra network settings: LyCORIS algo, conv dim/alpha, block dims, dropout variants.',
				format: t => formatArgs(t.networkArgs),
			},
			{
				key: 'ss_network_dim',
				label: 'Dim (rank)',
				definition: 'Rank of the low-rank update: how many directions each layer may change in; bigger means more capacity and a bigger file.',
				format: t => formatDim(t.networkDim),
			},
			{
				key: 'ss_network_alpha',
				label: 'Alpha',
				definition: 'Scales the update by alpha/dim; a lower alpha means smaller steps at the same learning rate.',
				format: t => formatDim(t.networkAlpha),
			},
			{
				key: 'derived.scale',
				label: 'Scale (alpha/dim)',
				definition: 'The factor every update is multiplied by at full strength.',
				format: t => formatNumber(t.derived.scale),
			},
			{
				key: 'ss_network_dropout',
				label: 'Dropout',
				definition: 'Share of the LoRA neurons dropped at each step to reduce overfitting.',
				format: t => formatNumber(t.networkDropout),
			},
		],
	},
	{
		title: 'Optimisation',
		fields: [
			{
				key: 'ss_learning_rate',
				label: 'Learning rate',
				definition: 'Base step size; used for the UNet and text encoder unless they have their own.',
				format: t => formatLr(t.learningRate),
			},
			{
				key: 'ss_unet_lr',
				label: 'UNet LR',
				definition: 'Step size for the image model (UNet or transformer).',
				format: t => formatLr(t.unetLr),
			},
			{
				key: 'ss_text_encoder_lr',
				label: 'Text encoder LR',
				definition: 'Step size for the text encoder(s); usually 5–10× lower than the UNet LR.',
				format: t =>
					t.textEncoderLrs && t.textEncoderLrs.length > 1
						? t.textEncoderLrs.map(v => formatLr(v)).join(' / ')
						: formatLr(t.textEncoderLr),
			},
			{
				key: 'ss_optimizer',
				label: 'Optimizer',
				definition: 'Algorithm that turns gradients into weight updates (AdamW8bit, Lion, Prodigy, …).',
				format: t => formatText(t.optimizerShortName ?? t.optimizer),
			},
			{
				key: 'ss_optimizer.args',
				label: 'Optimizer args',
				definition: 'Settings passed to the optimizer, e.g. weight_decay, betas, d_coef.',
				format: t => formatArgs(t.optimizerArgs),
			},
			{
				key: 'ss_lr_scheduler',
				label: 'LR scheduler',
				definition: 'How the learning rate changes over training (constant, cosine, cosine_with_restarts, …).',
				format: t => formatText(t.lrScheduler),
			},
			{
				key: 'ss_lr_warmup_steps',
				label: 'Warmup steps',
				definition: 'Steps at the start during which the learning rate ramps up from 0.',
				format: t => formatNumber(t.lrWarmupSteps),
			},
			{
				key: 'ss_steps',
				label: 'Steps',
				definition: 'Optimizer steps done when this file was saved (of the planned maximum).',
				format: formatSteps,
			},
			{
				key: 'ss_epoch',
				label: 'Epoch',
				definition: 'Epoch at which this file was saved, of the epochs planned; one epoch sees every image × its repeats once.',
				format: formatEpoch,
			},
			{
				key: 'ss_num_batches_per_epoch',
				label: 'Batches per epoch',
				definition: 'Batches in one pass over the dataset (images × repeats ÷ batch size).',
				format: t => formatNumber(t.numBatchesPerEpoch),
			},
			{
				key: 'ss_batch_size_per_device',
				label: 'Batch size',
				definition: 'Images processed together on each GPU per step.',
				format: t => formatNumber(t.batchSizePerDevice),
			},
			{
				key: 'ss_gradient_accumulation_steps',
				label: 'Gradient accumulation',
				definition: 'Batches summed before each optimizer step; multiplies the effective batch size.',
				format: t => formatNumber(t.gradientAccumulationSteps),
			},
			{
				key: 'derived.effectiveBatchSize',
				label: 'Effective batch',
				definition: 'Images per optimizer step: batch size × accumulation (× GPUs when recorded).',
				format: t => formatNumber(t.derived.effectiveBatchSize),
			},
			{
				key: 'ss_max_grad_norm',
				label: 'Max grad norm',
				definition: 'Gradients larger than this are clipped, which guards against sudden jumps.',
				format: t => formatNumber(t.maxGradNorm),
			},
			{
				key: 'ss_scale_weight_norms',
				label: 'Scale weight norms',
				definition: 'Caps the norm of each module update (max-norm regularisation).',
				format: t => formatNumber(t.scaleWeightNorms),
			},
			{
				key: 'ss_mixed_precision',
				label: 'Precision',
				definition: 'Number format used for training math (fp16, bf16 or no = fp32).',
				format: t => formatText(t.mixedPrecision),
			},
			{
				key: 'ss_seed',
				label: 'Seed',
				definition: 'Random seed of the run; the same seed and settings reproduce it.',
				format: t => formatNumber(t.seed),
			},
		],
	},
	{
		title: 'Noise & loss',
		fields: [
			{
				key: 'ss_noise_offset',
				label: 'Noise offset',
				definition: 'Adds a constant shift to the noise so the model learns very dark and very bright images.',
				format: formatNoiseOffset,
			},
			{
				key: 'ss_adaptive_noise_scale',
				label: 'Adaptive noise scale',
				definition: 'Makes the noise offset follow each latent’s mean brightness.',
				format: t => formatNumber(t.adaptiveNoiseScale),
			},
			{
				key: 'ss_multires_noise_iterations',
				label: 'Multires noise iterations',
				definition: 'Pyramid (multi-resolution) noise levels added to help learn overall contrast and composition.',
				format: t => formatNumber(t.multiresNoiseIterations),
			},
			{
				key: 'ss_multires_noise_discount',
				label: 'Multires noise discount',
				definition: 'How much weaker each coarser pyramid-noise level is.',
				format: t => formatNumber(t.multiresNoiseDiscount),
			},
			{
				key: 'ss_ip_noise_gamma',
				label: 'IP noise gamma',
				definition: 'Input-perturbation noise: extra noise on the input that reduces exposure bias.',
				format: formatIpNoise,
			},
			{
				key: 'ss_min_snr_gamma',
				label: 'Min-SNR gamma',
				definition: 'Down-weights the loss of low-noise timesteps so training converges faster (typical 5).',
				format: t => formatNumber(t.minSnrGamma),
			},
			{
				key: 'ss_zero_terminal_snr',
				label: 'Zero terminal SNR',
				definition: 'Rescales the noise schedule so the last step is pure noise (needed for true black/white images).',
				format: t => formatBool(t.zeroTerminalSnr),
			},
			{
				key: 'ss_debiased_estimation',
				label: 'Debiased estimation',
				definition: 'Re-weights the loss per timestep to remove a bias toward high-noise steps.',
				format: t => formatBool(t.debiasedEstimation),
			},
			{
				key: 'ss_loss_type',
				label: 'Loss',
				definition: 'How prediction error is measured: l2 (MSE), l1, huber or smooth_l1.',
				format: t => formatText(t.lossType),
			},
			{
				key: 'ss_huber_c',
				label: 'Huber settings',
				definition: 'Schedule and threshold of the Huber loss, which is less sensitive to outliers.',
				format: formatHuber,
			},
			{
				key: 'ss_prior_loss_weight',
				label: 'Prior loss weight',
				definition: 'Weight of the regularisation images’ loss relative to the training images.',
				format: t => (t.numRegImages ? formatNumber(t.priorLossWeight) : null),
			},
			{
				key: 'ss_timestep_sampling',
				label: 'Timestep sampling',
				definition: 'How training timesteps are drawn (Flux/SD3: sigma, uniform, sigmoid, shift, flux_shift).',
				format: t => formatText(t.timestepSampling),
			},
			{
				key: 'ss_discrete_flow_shift',
				label: 'Flow shift',
				definition: 'Shift of the flow-matching schedule toward noisier timesteps.',
				format: t => formatNumber(t.discreteFlowShift),
			},
			{
				key: 'ss_guidance_scale',
				label: 'Guidance scale',
				definition: 'Distilled guidance value fed to Flux dev during training.',
				format: t => formatNumber(t.guidanceScale),
			},
			{
				key: 'ss_model_prediction_type',
				label: 'Prediction type',
				definition: 'How the model output is interpreted for the loss (raw, additive, sigma_scaled).',
				format: t => formatText(t.modelPredictionType),
			},
		],
	},
	{
		title: 'Dataset',
		fields: [
			{
				key: 'ss_num_train_images',
				label: 'Training images',
				definition: 'Training images counted with their repeats (images × repeats per dir, summed).',
				format: t => formatNumber(t.derived.imagesTimesRepeats ?? t.numTrainImages),
			},
			{
				key: 'ss_dataset_dirs',
				label: 'Image folders',
				definition: 'Training folders with repeats × image count; repeats say how often each image is shown per epoch.',
				format: t => formatDirs(t, false),
			},
			{
				key: 'ss_num_reg_images',
				label: 'Regularisation images',
				definition: 'Class images mixed in so the model does not forget what the class looks like in general.',
				format: t => (t.numRegImages ? formatNumber(t.numRegImages) : null),
			},
			{
				key: 'ss_reg_dataset_dirs',
				label: 'Regularisation folders',
				definition: 'Regularisation folders with repeats × image count.',
				format: t => formatDirs(t, true),
			},
			{
				key: 'ss_resolution',
				label: 'Resolution',
				definition: 'Training resolution (width x height); images are scaled to about this many pixels.',
				format: t => formatResolution(t.resolution),
			},
			{
				key: 'ss_bucket_info',
				label: 'Aspect buckets',
				definition: 'Images are grouped into buckets of similar aspect ratio so they need not be cropped square.',
				format: formatBuckets,
			},
			{
				key: 'ss_tag_frequency',
				label: 'Tags',
				definition: 'Caption tags and how many captions contain each (see the Tags tab).',
				format: formatTags,
			},
			{
				key: 'derived.triggerCandidates',
				label: 'Trigger candidates',
				definition: 'Tags found in at least half of the captions, most frequent first: likely trigger words.',
				format: t => (t.derived.triggerCandidates.length === 0 ? null : sanitizeLine(t.derived.triggerCandidates.join(', '), 200)),
			},
			{
				key: 'modelspec.trigger_phrase',
				label: 'Trigger phrase',
				definition: 'The trigger the author declared in the model spec.',
				format: t => formatText(t.modelspec.triggerPhrase),
			},
			{
				key: 'ss_shuffle_caption',
				label: 'Shuffle captions',
				definition: 'Tag order was shuffled each step (the first keep-tokens tags stay in place).',
				format: t => formatBool(t.shuffleCaption),
			},
			{
				key: 'ss_keep_tokens',
				label: 'Keep tokens',
				definition: 'Leading caption tags never shuffled or dropped, usually the trigger word.',
				format: t => formatNumber(t.keepTokens),
			},
			{
				key: 'ss_caption_dropout_rate',
				label: 'Caption dropout',
				definition: 'Share of steps trained with an empty caption.',
				format: t => (t.captionDropoutRate ? formatNumber(t.captionDropoutRate) : null),
			},
			{
				key: 'ss_caption_tag_dropout_rate',
				label: 'Tag dropout',
				definition: 'Chance of dropping each individual tag from a caption.',
				format: t => (t.captionTagDropoutRate ? formatNumber(t.captionTagDropoutRate) : null),
			},
			{
				key: 'ss_flip_aug',
				label: 'Flip augmentation',
				definition: 'Images were randomly mirrored left to right.',
				format: t => formatBool(t.flipAug),
			},
		],
	},
	{
		title: 'Run',
		fields: [
			{
				key: 'ss_output_name',
				label: 'Output name',
				definition: 'Name the trainer gave the output file.',
				format: t => formatText(t.outputName),
			},
			{
				key: 'modelspec.title',
				label: 'Title',
				definition: 'Title in the model spec.',
				format: t => formatText(t.modelspec.title),
			},
			{
				key: 'modelspec.author',
				label: 'Author',
				definition: 'Author in the model spec.',
				format: t => formatText(t.modelspec.author),
			},
			{
				key: 'ss_training_started_at',
				label: 'Started',
				definition: 'When training started (local time).',
				format: t => formatDate(t.trainingStartedAt),
			},
			{
				key: 'ss_training_finished_at',
				label: 'Saved',
				definition: 'When this file was written (local time).',
				format: t => formatDate(t.trainingFinishedAt),
			},
			{
				key: 'derived.durationSeconds',
				label: 'Duration',
				definition: 'Time from the start of training to this save.',
				format: t => formatDuration(t.derived.durationSeconds),
			},
			{
				key: 'ss_session_id',
				label: 'Session',
				definition: 'Random id shared by all epochs saved from one training run.',
				format: t => formatText(t.sessionId),
			},
			{
				key: 'ss_sd_scripts_commit_hash',
				label: 'Trainer',
				definition: 'Training tool and its version or commit.',
				format: formatSoftware,
			},
			{
				key: 'ss_training_comment',
				label: 'Comment',
				definition: 'Free-text comment set by the trainer or by a resize/merge tool.',
				format: t => (t.trainingComment === null ? null : sanitizeLine(t.trainingComment, 400)),
			},
		],
	},
];

/** Every field of every group, for lookups by key. */
export const trainingFieldsByKey: ReadonlyMap<string, TrainingField> = new Map(
	trainingGroups.flatMap(g => g.fields.map(f => [f.key, f] as const)),
);

/** The groups with only the fields this file records (format ≠ null), dropping empty groups. */
export function presentTrainingGroups(t: TrainingInfo): Array<{title: string; rows: Array<{field: TrainingField; value: string}>}> {
	const result: Array<{title: string; rows: Array<{field: TrainingField; value: string}>}> = [];
	for (const group of trainingGroups) {
		const rows: Array<{field: TrainingField; value: string}> = [];
		for (const field of group.fields) {
			const value = field.format(t);
			if (value !== null) {
				rows.push({field, value});
			}
		}

		if (rows.length > 0) {
			result.push({title: group.title, rows});
		}
	}

	return result;
}

function formatFieldByKey(t: TrainingInfo, key: string): string | null {
	return trainingFieldsByKey.get(key)?.format(t) ?? null;
}

/**
 * `formatTrainingValue(t, key)` formats one field of trainingGroups by its key (null when unknown or
 * not recorded); the value formatters are attached for direct use: `.lr`, `.number`, `.duration`,
 * `.date`, `.bool`, `.resolution`, `.text`.
 */
export const formatTrainingValue = Object.assign(formatFieldByKey, {
	lr: formatLr,
	number: formatNumber,
	duration: formatDuration,
	date: formatDate,
	bool: formatBool,
	resolution: formatResolution,
	text: formatText,
});
