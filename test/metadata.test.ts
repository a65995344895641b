import assert from 'node:assert/strict';
import {existsSync} from 'node:fs';
import path from 'node:path';
import {test} from 'node:test';
import {fileURLToPath} from 'node:url';
import {archFromClaim, parseOptimizer, parseResolution, parseTraining} from '../source/lora/metadata.js';
import {readHeader} from '../source/lora/safetensors.js';
import {
	formatDate,
	formatDuration,
	formatLr,
	presentTrainingGroups,
	trainingFieldsByKey,
	trainingGroups,
} from '../source/lora/training-fields.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const realDir = path.resolve(repoRoot, '../shared/real-loras');
const lokrPath = path.join(realDir, 'lycoris_lokr_sd15_kohya_dim4_smart_falcon.safetensors');
const missing = !existsSync(lokrPath);

// A realistic SDXL kohya map as train_network.py writes it (every value a str()).
const tagFrequency = {
	'10_mychar woman': {mychar: 20, 'long hair': 12, smile: 7, 'red dress': 3},
	'5_mychar outfit': {mychar: 8, 'red dress': 8, 'long hair': 2, 'night sky': 1},
};
const datasetDirs = {
	'10_mychar woman': {n_repeats: 10, img_count: 20},
	'5_mychar outfit': {n_repeats: 5, img_count: 8},
};
const kohya: Record<string, string> = {
	ss_session_id: '3141592653',
	ss_training_started_at: '1700000000.25',
	ss_training_finished_at: '1700005025.75',
	ss_output_name: 'mychar_v3',
	ss_training_comment: 'None',
	ss_sd_scripts_commit_hash: 'a1b2c3d4e5f6a7b8c9d0',
	ss_steps: '1380',
	ss_epoch: '6',
	ss_num_epochs: '10',
	ss_max_train_steps: '2300',
	ss_learning_rate: '0.0001',
	ss_unet_lr: '0.0001',
	ss_text_encoder_lr: '[5e-05, 2.5e-05]',
	ss_optimizer: 'bitsandbytes.optim.adamw.AdamW8bit(weight_decay=0.01,betas=(0.9, 0.999),foreach=False,eps=None)',
	ss_lr_scheduler: 'cosine',
	ss_lr_warmup_steps: '0',
	ss_max_grad_norm: '1.0',
	ss_scale_weight_norms: 'None',
	ss_gradient_accumulation_steps: '2',
	ss_gradient_checkpointing: 'True',
	ss_mixed_precision: 'bf16',
	ss_full_fp16: 'False',
	ss_cache_latents: 'False',
	ss_seed: '1234',
	ss_lowram: 'False',
	ss_network_module: 'networks.lora',
	ss_network_dim: '32',
	ss_network_alpha: '16.0',
	ss_network_dropout: 'None',
	ss_network_args: '{"conv_dim": "8", "conv_alpha": "4"}',
	ss_base_model_version: 'sdxl_base_v1-0',
	ss_v2: 'False',
	ss_clip_skip: 'None',
	ss_num_train_images: '240',
	ss_num_reg_images: '0',
	ss_num_batches_per_epoch: '460',
	ss_batch_size_per_device: '1',
	ss_total_batch_size: '2',
	ss_resolution: '(1024, 1024)',
	ss_noise_offset: '0.0357',
	ss_noise_offset_random_strength: 'False',
	ss_multires_noise_iterations: 'None',
	ss_multires_noise_discount: '0.3',
	ss_ip_noise_gamma: 'None',
	ss_min_snr_gamma: '5.0',
	ss_zero_terminal_snr: 'False',
	ss_debiased_estimation: 'False',
	ss_loss_type: 'l2',
	ss_huber_schedule: 'snr',
	ss_huber_c: '0.1',
	ss_prior_loss_weight: '1.0',
	ss_caption_dropout_rate: '0.0',
	ss_shuffle_caption: 'True',
	ss_keep_tokens: '1',
	ss_flip_aug: 'False',
	ss_enable_bucket: 'True',
	ss_min_bucket_reso: '256',
	ss_max_bucket_reso: '2048',
	ss_tag_frequency: JSON.stringify(tagFrequency),
	ss_dataset_dirs: JSON.stringify(datasetDirs),
	ss_reg_dataset_dirs: JSON.stringify({'1_woman': {n_repeats: 1, img_count: 50}}),
	ss_bucket_info: JSON.stringify({
		buckets: {
			0: {resolution: [832, 1216], count: 120},
			1: {resolution: [1024, 1024], count: 100},
			2: {resolution: [1216, 832], count: 20},
		},
		mean_img_ar_error: 0.021,
	}),
	// Broken on purpose: the failure must stay in this one field.
	ss_datasets: '[{"subsets": [',
	ss_max_token_length: 'not-a-number',
	ss_sd_model_name: 'sd_xl_base_1.0.safetensors',
	sshs_model_hash: 'f'.repeat(64),
	'modelspec.architecture': 'stable-diffusion-xl-v1-base/lora',
	'modelspec.title': 'My Character',
	'modelspec.resolution': '1024x1024',
	'modelspec.date': '2023-11-14T22:13:20',
	'modelspec.trigger_phrase': 'mychar',
};

test('parses a realistic kohya map into typed fields', () => {
	const t = parseTraining(kohya);
	assert.equal(t.hasTrainingMetadata, true);
	assert.equal(t.metadataLevel, 'full');
	assert.equal(t.sessionId, '3141592653');
	assert.equal(t.outputName, 'mychar_v3');
	assert.equal(t.trainingComment, null);
	assert.equal(t.learningRate, 1e-4);
	assert.equal(t.unetLr, 1e-4);
	assert.equal(t.textEncoderLr, 5e-5);
	assert.deepEqual(t.textEncoderLrs, [5e-5, 2.5e-5]);
	assert.equal(t.optimizerName, 'bitsandbytes.optim.adamw.AdamW8bit');
	assert.equal(t.optimizerShortName, 'AdamW8bit');
	assert.deepEqual(t.optimizerArgs, {weight_decay: 0.01, betas: '(0.9, 0.999)', foreach: false, eps: null});
	assert.equal(t.lrScheduler, 'cosine');
	assert.equal(t.lrWarmupSteps, 0);
	assert.equal(t.maxGradNorm, 1);
	assert.equal(t.scaleWeightNorms, null);
	assert.equal(t.gradientAccumulationSteps, 2);
	// "False" must be false (lora-inspector's bool(str) says true).
	assert.equal(t.gradientCheckpointing, true);
	assert.equal(t.fullFp16, false);
	assert.equal(t.cacheLatents, false);
	assert.equal(t.v2, false);
	assert.equal(t.zeroTerminalSnr, false);
	assert.equal(t.debiasedEstimation, false);
	assert.equal(t.noiseOffsetRandomStrength, false);
	assert.equal(t.shuffleCaption, true);
	assert.equal(t.seed, 1234);
	assert.equal(t.networkModule, 'networks.lora');
	assert.equal(t.networkDim, 32);
	assert.equal(t.networkAlpha, 16);
	assert.equal(t.networkDropout, null);
	assert.deepEqual(t.networkArgs, {conv_dim: '8', conv_alpha: '4'});
	assert.equal(t.baseModelVersion, 'sdxl_base_v1-0');
	assert.equal(t.clipSkip, null);
	assert.equal(t.numTrainImages, 240);
	assert.equal(t.numBatchesPerEpoch, 460);
	assert.equal(t.numEpochs, 10);
	assert.equal(t.maxTrainSteps, 2300);
	assert.equal(t.steps, 1380);
	assert.equal(t.epoch, 6);
	assert.equal(t.noiseOffset, 0.0357);
	assert.equal(t.multiresNoiseIterations, null);
	assert.equal(t.multiresNoiseDiscount, 0.3);
	assert.equal(t.minSnrGamma, 5);
	assert.equal(t.lossType, 'l2');
	assert.equal(t.huberC, 0.1);
	assert.deepEqual(t.resolution, [1024, 1024]);
	assert.equal(t.minBucketReso, 256);
	assert.equal(t.maxBucketReso, 2048);
	assert.equal(t.meanImageAspectError, 0.021);
	assert.equal(t.trainingStartedAt?.getTime(), 1_700_000_000_250);
	assert.equal(t.trainingFinishedAt?.getTime(), 1_700_005_025_750);
	assert.equal(t.modelspec.title, 'My Character');
	assert.equal(t.modelspec.architecture, 'stable-diffusion-xl-v1-base/lora');
	assert.deepEqual(t.modelspec.resolution, [1024, 1024]);
	assert.equal(t.modelspec.triggerPhrase, 'mychar');
	assert.equal(t.modelspec.date?.getTime(), new Date(2023, 10, 14, 22, 13, 20).getTime());
	assert.equal(t.sshsModelHash, 'f'.repeat(64));
	assert.equal(t.software?.name, 'kohya sd-scripts');
	// The raw map is not part of the typed info.
	assert.ok(!('metadata' in t));
});

test('broken values are contained per field with one-line reasons', () => {
	const t = parseTraining(kohya);
	const keys = t.fieldErrors.map(e => e.key).sort();
	assert.deepEqual(keys, ['ss_datasets', 'ss_max_token_length']);
	for (const e of t.fieldErrors) {
		assert.ok(!e.reason.includes('\n'));
		assert.ok(e.reason.length < 100);
	}

	assert.equal(t.maxTokenLength, null);
	assert.deepEqual(t.datasets, []);
	// Everything else still parsed.
	assert.equal(t.tags.length, 8);
});

test('tags: every (dir, tag) pair, and merged counts summed across dirs', () => {
	const t = parseTraining(kohya);
	// Independent reference: flatten and sum the literal above.
	const pairs: Array<{dir: string; tag: string; count: number}> = [];
	const sums = new Map<string, number>();
	for (const [dir, tags] of Object.entries(tagFrequency)) {
		for (const [tag, count] of Object.entries(tags)) {
			pairs.push({dir, tag, count});
			sums.set(tag, (sums.get(tag) ?? 0) + count);
		}
	}

	assert.equal(t.tags.length, pairs.length);
	for (const p of pairs) {
		assert.ok(t.tags.some(x => x.dir === p.dir && x.tag === p.tag && x.count === p.count));
	}

	for (let i = 1; i < t.tags.length; i++) {
		assert.ok(t.tags[i - 1]!.count >= t.tags[i]!.count);
	}

	assert.equal(t.mergedTags.length, sums.size);
	for (const m of t.mergedTags) {
		assert.equal(m.count, sums.get(m.tag));
	}

	// lora-inspector shows the smaller per-dir count for a tag in two dirs; the sum is 11 (3 + 8).
	const redDress = t.mergedTags.find(m => m.tag === 'red dress')!;
	assert.equal(redDress.count, 11);
	assert.deepEqual([...redDress.dirs].sort(), ['10_mychar woman', '5_mychar outfit']);
	assert.deepEqual(
		t.mergedTags.map(m => m.count),
		[...sums.values()].sort((a, b) => b - a),
	);
});

test('dataset dirs, reg dirs and buckets', () => {
	const t = parseTraining(kohya);
	assert.deepEqual(t.dataset, [
		{dir: '10_mychar woman', repeats: 10, images: 20, isReg: false},
		{dir: '5_mychar outfit', repeats: 5, images: 8, isReg: false},
		{dir: '1_woman', repeats: 1, images: 50, isReg: true},
	]);
	assert.deepEqual(t.buckets, [
		{resolution: [832, 1216], count: 120},
		{resolution: [1024, 1024], count: 100},
		{resolution: [1216, 832], count: 20},
	]);
});

test('derived facts', () => {
	const t = parseTraining(kohya);
	const d = t.derived;
	assert.equal(d.metadataDim, 32);
	assert.equal(d.metadataAlpha, 16);
	assert.equal(d.scale, 16 / 32);
	assert.equal(d.convDim, 8);
	assert.equal(d.convAlpha, 4);
	assert.equal(d.effectiveUnetLr, 1e-4);
	assert.equal(d.effectiveTextEncoderLr, 5e-5);
	assert.equal(d.stepsPerEpoch, Math.ceil(460 / 2));
	assert.equal(d.totalSteps, 1380);
	assert.equal(d.imagesTimesRepeats, 10 * 20 + 5 * 8);
	assert.equal(d.imagesTimesRepeats, t.numTrainImages);
	assert.equal(d.effectiveBatchSize, 2);
	assert.equal(d.durationSeconds, 5025.5);
	assert.equal(d.metadataArch, 'sdxl');
	// 28 captions; mychar is in 28 (100%), long hair in 14 (50%), red dress in 11 (39%).
	assert.deepEqual(d.triggerCandidates, ['mychar', 'long hair']);
});

test('derived fallbacks: steps from epochs, batch from accumulation', () => {
	const t = parseTraining({
		ss_epoch: '3',
		ss_num_batches_per_epoch: '101',
		ss_gradient_accumulation_steps: '4',
		ss_batch_size_per_device: '2',
		ss_max_train_steps: '999',
	});
	assert.equal(t.derived.stepsPerEpoch, 26);
	assert.equal(t.derived.totalSteps, 78);
	assert.equal(t.derived.effectiveBatchSize, 8);
	assert.equal(t.derived.imagesTimesRepeats, null);
	assert.equal(t.derived.scale, null);
	assert.equal(t.derived.durationSeconds, null);
});

test('ss_datasets (dataset_config) subsets, tags and buckets', () => {
	const datasets = [
		{
			is_dreambooth: true,
			batch_size_per_device: 4,
			num_train_images: 130,
			num_reg_images: 20,
			resolution: [768, 768],
			enable_bucket: true,
			min_bucket_reso: 320,
			max_bucket_reso: 1280,
			tag_frequency: {img: {a: 13, b: 2}},
			bucket_info: {buckets: {0: {resolution: [768, 768], count: 130}}, mean_img_ar_error: 0},
			subsets: [
				{img_count: 13, num_repeats: 10, image_dir: 'img', class_tokens: 'sks dog', is_reg: false, shuffle_caption: true, keep_tokens: 1},
				{img_count: 20, num_repeats: 1, image_dir: 'reg', class_tokens: 'dog', is_reg: true},
			],
		},
	];
	const t = parseTraining({ss_datasets: JSON.stringify(datasets), ss_dataset_dirs: JSON.stringify({img: {n_repeats: 10, img_count: 13}})});
	assert.deepEqual(t.fieldErrors, []);
	assert.deepEqual(t.dataset, [
		{dir: 'img', repeats: 10, images: 13, isReg: false},
		{dir: 'reg', repeats: 1, images: 20, isReg: true},
	]);
	assert.equal(t.batchSizePerDevice, 4);
	assert.deepEqual(t.resolution, [768, 768]);
	assert.equal(t.datasets[0]!.subsets[0]!.classTokens, 'sks dog');
	assert.deepEqual(t.buckets, [{resolution: [768, 768], count: 130}]);
	assert.deepEqual(t.mergedTags.map(m => [m.tag, m.count]), [['a', 13], ['b', 2]]);
	assert.equal(t.derived.imagesTimesRepeats, 130);
	assert.deepEqual(t.derived.triggerCandidates, ['a']);
});

test('strict scalars: None, booleans, numbers, dates, Dynamic', () => {
	const t = parseTraining({
		ss_learning_rate: '1e-4x',
		ss_unet_lr: 'nan',
		ss_text_encoder_lr: 'inf',
		ss_seed: '12.5',
		ss_v2: 'yes',
		ss_cache_latents: 'false',
		ss_training_started_at: '-5',
		ss_training_finished_at: 'tomorrow',
		ss_network_dim: 'Dynamic',
		ss_network_alpha: 'Dynamic',
		ss_resolution: '512',
		ss_epoch: ' 7 ',
		ss_noise_offset: '',
	});
	assert.equal(t.learningRate, null);
	assert.equal(t.unetLr, null);
	assert.equal(t.textEncoderLr, null);
	assert.equal(t.seed, null);
	assert.equal(t.v2, null);
	assert.equal(t.cacheLatents, false);
	assert.equal(t.trainingStartedAt, null);
	assert.equal(t.trainingFinishedAt, null);
	assert.equal(t.networkDim, 'Dynamic');
	assert.equal(t.networkAlpha, 'Dynamic');
	assert.equal(t.derived.metadataDim, null);
	assert.equal(t.derived.scale, null);
	assert.deepEqual(t.resolution, [512, 512]);
	assert.equal(t.epoch, 7);
	assert.equal(t.noiseOffset, null);
	const byKey = new Map(t.fieldErrors.map(e => [e.key, e.reason]));
	assert.equal(byKey.get('ss_learning_rate'), 'not a number');
	assert.equal(byKey.get('ss_unet_lr'), 'not a finite number');
	assert.equal(byKey.get('ss_text_encoder_lr'), 'not a finite number');
	assert.equal(byKey.get('ss_seed'), 'not a whole number');
	assert.equal(byKey.get('ss_v2'), 'not True or False');
	assert.equal(byKey.get('ss_training_started_at'), 'implausible date');
	assert.equal(byKey.get('ss_training_finished_at'), 'not a unix time');
	assert.equal(t.fieldErrors.length, 7);
});

test('hostile JSON: wrong shapes, deep nesting, huge values, __proto__, reasons quote nothing', () => {
	const deep = '{"a":'.repeat(50_000) + '1' + '}'.repeat(50_000);
	const t = parseTraining({
		ss_tag_frequency: '{"d": {"ok": 3, "bad": "x", "neg": -1}, "e": 5}',
		ss_dataset_dirs: '[1, 2]',
		ss_bucket_info: deep,
		ss_network_args: '{"__proto__": {"polluted": true}, "conv_dim": "abc"}',
		ss_datasets: `{"x": "\x1b]52;c;AAAA\x07" oops`,
		ss_reg_dataset_dirs: 'null',
	});
	assert.deepEqual(t.tags, [{dir: 'd', tag: 'ok', count: 3}]);
	assert.deepEqual(t.dataset, []);
	assert.deepEqual(t.buckets, []);
	assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
	assert.equal(t.derived.convDim, null);
	const keys = new Set(t.fieldErrors.map(e => e.key));
	for (const key of ['ss_tag_frequency', 'ss_dataset_dirs', 'ss_bucket_info', 'ss_network_args', 'ss_datasets']) {
		assert.ok(keys.has(key), key);
	}

	assert.ok(!keys.has('ss_reg_dataset_dirs'));
	for (const e of t.fieldErrors) {
		assert.ok(!e.reason.includes('\x1b') && !e.reason.includes('AAAA'), e.reason);
	}

	// A 20 MB value is refused by size, fast, without parsing.
	const start = performance.now();
	const huge = parseTraining({ss_tag_frequency: '{"d": {"' + 'x'.repeat(20 * 1024 * 1024) + '": 1}}'});
	assert.ok(performance.now() - start < 500);
	assert.match(huge.fieldErrors[0]!.reason, /too large/);
});

test('never throws on odd inputs', () => {
	assert.doesNotThrow(() => parseTraining({}));
	assert.doesNotThrow(() => parseTraining(null as unknown as Record<string, string>));
	assert.doesNotThrow(() => parseTraining({ss_epoch: 5 as unknown as string, ss_tag_frequency: {} as unknown as string}));
	const empty = parseTraining({format: 'pt'});
	assert.equal(empty.hasTrainingMetadata, false);
	assert.equal(empty.metadataLevel, 'none');
	const minimal = parseTraining({ss_network_dim: '16', ss_network_alpha: '8', ss_network_module: 'networks.lora', ss_v2: 'False'});
	assert.equal(minimal.metadataLevel, 'minimal');
});

test('helpers: optimizer, resolution, arch claims', () => {
	assert.deepEqual(parseOptimizer('prodigyopt.prodigy.Prodigy(decouple=True,d_coef=2,use_bias_correction=True,safeguard_warmup=True)'), {
		name: 'prodigyopt.prodigy.Prodigy',
		shortName: 'Prodigy',
		args: {decouple: true, d_coef: 2, use_bias_correction: true, safeguard_warmup: true},
	});
	assert.deepEqual(parseOptimizer('AdamW'), {name: 'AdamW', shortName: 'AdamW', args: null});
	assert.deepEqual(parseResolution('(768, 512)'), [768, 512]);
	assert.deepEqual(parseResolution('1024,1024'), [1024, 1024]);
	assert.deepEqual(parseResolution('[512, 768]'), [512, 768]);
	assert.equal(parseResolution('big'), undefined);
	assert.equal(archFromClaim('sd_v1'), 'sd1');
	assert.equal(archFromClaim('sd_1.5'), 'sd1');
	assert.equal(archFromClaim('sd_v2_v'), 'sd2');
	assert.equal(archFromClaim('sdxl_base_v1-0'), 'sdxl');
	assert.equal(archFromClaim('flux1'), 'flux');
	assert.equal(archFromClaim('stable-diffusion-3-medium/lora'), 'sd3');
	assert.equal(archFromClaim('stable-diffusion-v2-768-v/lora'), 'sd2');
	assert.equal(archFromClaim('lumina2'), null);
});

test('training fields: groups, labels, formatting', () => {
	const titles = trainingGroups.map(g => g.title);
	assert.deepEqual(titles, ['Base model', 'Network', 'Optimisation', 'Noise & loss', 'Dataset', 'Run']);
	for (const g of trainingGroups) {
		for (const f of g.fields) {
			assert.ok(f.label.length > 0 && f.definition.length > 0, f.key);
			assert.ok(!f.definition.includes('\n'));
		}
	}

	assert.equal(trainingFieldsByKey.size, trainingGroups.reduce((n, g) => n + g.fields.length, 0), 'keys are unique');
	assert.equal(formatLr(0.0003), '3e-4');
	assert.equal(formatLr(0.00015), '1.5e-4');
	assert.equal(formatLr(1), '1');
	assert.equal(formatLr(0.5), '0.5');
	assert.equal(formatLr(1e-5), '1e-5');
	assert.equal(formatDuration(4980), '1h 23m');
	assert.equal(formatDuration(45), '45s');
	assert.equal(formatDuration(725), '12m 5s');
	assert.equal(formatDuration(93_600), '1d 2h');
	const d = new Date(2024, 0, 2, 3, 4, 5);
	assert.equal(formatDate(d), '2024-01-02 03:04');

	const t = parseTraining(kohya);
	const rows = new Map(presentTrainingGroups(t).flatMap(g => g.rows.map(r => [r.field.key, r.value])));
	assert.equal(rows.get('ss_learning_rate'), '1e-4');
	assert.equal(rows.get('ss_text_encoder_lr'), '5e-5 / 2.5e-5');
	assert.equal(rows.get('ss_optimizer'), 'AdamW8bit');
	assert.equal(rows.get('ss_network_alpha'), '16');
	assert.equal(rows.get('derived.scale'), '0.5');
	assert.equal(rows.get('ss_steps'), '1380 of 2300');
	assert.equal(rows.get('ss_epoch'), '6 of 10');
	assert.equal(rows.get('derived.effectiveBatchSize'), '2');
	assert.equal(rows.get('derived.durationSeconds'), formatDuration(5025.5));
	assert.equal(rows.get('ss_zero_terminal_snr'), 'no');
	assert.equal(rows.get('ss_resolution'), '1024x1024');
	assert.equal(rows.get('ss_training_comment'), undefined);
	assert.equal(rows.get('ss_bucket_info'), '3 buckets, 832–1216 px, 240 images');
	assert.equal(rows.get('derived.triggerCandidates'), 'mychar, long hair');
	// File text is made inert by the formatters.
	const hostile = parseTraining({ss_output_name: 'x\x1b]0;owned\x07y\u202e', ss_optimizer: '\x1b[2JEvil(a=1)'});
	const hostileRows = presentTrainingGroups(hostile).flatMap(g => g.rows.map(r => r.value));
	assert.ok(hostileRows.includes('xy'));
	assert.ok(hostileRows.every(v => !v.includes('\x1b')));
});

test('real LoKr file: kohya metadata of a LyCORIS run', {skip: missing ? 'needs ../shared/real-loras' : false}, async () => {
	const header = await readHeader(lokrPath);
	const raw = header.metadata;
	const t = parseTraining(raw);
	assert.deepEqual(t.fieldErrors, []);
	assert.equal(t.networkModule, 'lycoris.kohya');
	assert.equal(t.networkDim, 4);
	assert.equal(t.networkAlpha, 4);
	assert.equal(t.derived.algo, 'lokr');
	assert.equal(t.derived.convDim, 4);
	assert.equal(t.learningRate, 3e-4);
	assert.equal(t.unetLr, 3e-4);
	assert.equal(t.textEncoderLr, 1.5e-4);
	assert.equal(t.optimizerShortName, 'Lion');
	assert.deepEqual(t.optimizerArgs, {weight_decay: 0.1});
	assert.equal(t.v2, false);
	assert.equal(t.cacheLatents, false);
	assert.equal(t.bucketNoUpscale, true);
	assert.equal(t.clipSkip, null);
	assert.equal(t.minSnrGamma, null);
	assert.deepEqual(t.resolution, [768, 768]);
	assert.equal(t.epoch, 10);

	// Independent cross-checks against the raw JSON values.
	const dirs = JSON.parse(raw['ss_dataset_dirs']!) as Record<string, {n_repeats: number; img_count: number}>;
	const expectedImages = Object.values(dirs).reduce((s, d) => s + d.n_repeats * d.img_count, 0);
	assert.equal(t.derived.imagesTimesRepeats, expectedImages);
	assert.equal(expectedImages, Number(raw['ss_num_train_images']));
	const bucketInfo = JSON.parse(raw['ss_bucket_info']!) as {buckets: Record<string, {count: number}>};
	assert.equal(t.buckets.length, Object.keys(bucketInfo.buckets).length);
	assert.equal(
		t.buckets.reduce((s, b) => s + b.count, 0),
		Object.values(bucketInfo.buckets).reduce((s, b) => s + b.count, 0),
	);
	const freq = JSON.parse(raw['ss_tag_frequency']!) as Record<string, Record<string, number>>;
	const sums = new Map<string, number>();
	let pairs = 0;
	for (const tags of Object.values(freq)) {
		for (const [tag, n] of Object.entries(tags)) {
			sums.set(tag, (sums.get(tag) ?? 0) + n);
			pairs++;
		}
	}

	assert.equal(t.tags.length, pairs);
	assert.equal(t.mergedTags.length, sums.size);
	const top = t.mergedTags[0]!;
	assert.equal(top.count, Math.max(...sums.values()));
	assert.equal(top.tag, 'smart falcon \\(umamusume\\)');
	assert.equal(t.derived.triggerCandidates[0], top.tag);
	const started = Number(raw['ss_training_started_at']);
	const finished = Number(raw['ss_training_finished_at']);
	assert.ok(Math.abs(t.derived.durationSeconds! - (finished - started)) < 1e-3);
});
