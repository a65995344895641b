import assert from 'node:assert/strict';
import {existsSync} from 'node:fs';
import path from 'node:path';
import {test} from 'node:test';
import {fileURLToPath} from 'node:url';
import {findTrainingIssues, isAdaptiveOptimizer, type Finding} from '../source/lora/findings.js';
import {parseTraining} from '../source/lora/metadata.js';
import {loadLoraModel} from '../source/lora/model.js';
import {readHeader, TensorReader} from '../source/lora/safetensors.js';
import type {Arch, Component, LayerKind, LoraModel, LoraModule, LoraStats, ModuleNorm} from '../source/lora/types.js';

function module(name: string, options: {component?: Component; kind?: LayerKind; rank?: number | null; alpha?: number | null; alphaSource?: LoraModule['alphaSource']} = {}): LoraModule {
	const rank = options.rank === undefined ? 16 : options.rank;
	return {
		name,
		component: options.component ?? 'unet',
		algo: 'lora',
		kind: options.kind ?? 'linear',
		rank,
		alpha: options.alpha === undefined ? 8 : options.alpha,
		alphaSource: options.alphaSource ?? 'tensor',
		scale: 0.5,
		outDim: 320,
		inDim: 320,
		kernel: null,
		block: 'IN01',
		blockOrder: 1,
		tensors: {},
		hasDora: false,
		needsBase: false,
	};
}

function model(modules: LoraModule[], options: {arch?: Arch; metadataArch?: Arch | null} = {}): LoraModel {
	return {
		keyStyle: 'kohya',
		networkType: 'LoRA',
		arch: options.arch ?? 'sd1',
		archEvidence: 'attn2 to_k in=768',
		metadataArch: options.metadataArch ?? null,
		modules,
		rank: modules[0]?.rank ?? null,
		alpha: modules[0]?.alpha ?? null,
		dtype: 'F16',
		unknownTensors: [],
		warnings: [],
	};
}

function stats(options: Partial<LoraStats> = {}): LoraStats {
	const modules: ModuleNorm[] = options.modules ?? [];
	return {
		buckets: {unet: null, unetConv: null, te: null, te2: null},
		modules,
		blocks: [],
		unetNorm: 10,
		teNorm: 2,
		nonFiniteValues: 0,
		zeroModules: [],
		bytesRead: 0,
		...options,
	};
}

const baseMeta: Record<string, string> = {
	ss_network_module: 'networks.lora',
	ss_network_dim: '16',
	ss_network_alpha: '8',
	ss_learning_rate: '0.0001',
	ss_unet_lr: '0.0001',
	ss_text_encoder_lr: '2e-05',
	ss_optimizer: 'bitsandbytes.optim.adamw.AdamW8bit',
	ss_base_model_version: 'sd_v1',
};

const healthyModel = model([module('lora_unet_a'), module('lora_unet_b'), module('lora_te_c', {component: 'te'})], {metadataArch: 'sd1'});

function ids(meta: Record<string, string>, m: LoraModel | null = healthyModel, s: LoraStats | null = stats()): string[] {
	return findTrainingIssues({training: parseTraining(meta), model: m, stats: s}).map(f => f.id);
}

function find(meta: Record<string, string>, id: string, m: LoraModel | null = healthyModel, s: LoraStats | null = stats()): Finding | undefined {
	return findTrainingIssues({training: parseTraining(meta), model: m, stats: s}).find(f => f.id === id);
}

function assertWellFormed(f: Finding | undefined): asserts f is Finding {
	assert.ok(f, 'finding expected');
	assert.ok(f.title.length > 0 && f.reason.length > 0);
	assert.ok(!f.reason.includes('\n') && !f.title.includes('\n'));
	assert.ok(!f.reason.includes('\x1b'));
}

test('a healthy run has no findings', () => {
	assert.deepEqual(ids(baseMeta), []);
});

test('TE LR at or above the UNet LR', () => {
	const above = find({...baseMeta, ss_text_encoder_lr: '0.0002'}, 'te-lr-high');
	assertWellFormed(above);
	assert.equal(above.severity, 'warning');
	assert.match(above.reason, /2e-4/);
	assert.match(above.reason, /1e-4/);
	assert.match(above.reason, /5–10× lower/);
	const equal = find({...baseMeta, ss_text_encoder_lr: 'None', ss_unet_lr: 'None'}, 'te-lr-high');
	assertWellFormed(equal);
	assert.equal(equal.severity, 'note');
	// Half the UNet rate is lower: not reported (the 1e-4 vs 5e-5 tolerance bug would flag it).
	assert.ok(!ids({...baseMeta, ss_text_encoder_lr: '5e-05'}).includes('te-lr-high'));
	// No text encoder in the weights: the TE LR did nothing.
	const unetOnly = model([module('lora_unet_a')]);
	assert.ok(!ids({...baseMeta, ss_text_encoder_lr: '0.0002'}, unetOnly).includes('te-lr-high'));
	// TE LR 0 means the text encoder was not trained.
	assert.ok(!ids({...baseMeta, ss_text_encoder_lr: '0'}).includes('te-lr-high'));
	// A per-encoder list: the largest one counts.
	assert.ok(ids({...baseMeta, ss_text_encoder_lr: '[1e-05, 0.0003]'}).includes('te-lr-high'));
});

test('adaptive optimizer with an LR far from 1', () => {
	const prodigy = {...baseMeta, ss_optimizer: 'prodigyopt.prodigy.Prodigy(d_coef=2)', ss_learning_rate: '0.0001', ss_unet_lr: '0.0001', ss_text_encoder_lr: '0.0001'};
	const f = find(prodigy, 'adaptive-optimizer-lr');
	assertWellFormed(f);
	assert.equal(f.severity, 'warning');
	assert.match(f.reason, /Prodigy/);
	assert.match(f.reason, /1e-4/);
	// TE = UNet is normal with adaptive optimizers: no TE finding.
	assert.ok(!ids(prodigy).includes('te-lr-high'));
	const fine = {...baseMeta, ss_optimizer: 'prodigyopt.prodigy.Prodigy', ss_learning_rate: '1.0', ss_unet_lr: '1.0', ss_text_encoder_lr: '1.0'};
	assert.deepEqual(ids(fine), []);
	assert.ok(ids({...fine, ss_optimizer: 'dadaptation.dadapt_lion.DAdaptLion', ss_unet_lr: '0.001'}).includes('adaptive-optimizer-lr'));
	assert.ok(isAdaptiveOptimizer('dadaptation.dadapt_adam.DAdaptAdam'));
	assert.ok(isAdaptiveOptimizer('D-Adapt Lion'));
	assert.ok(!isAdaptiveOptimizer('torch.optim.adamw.AdamW'));
});

test('alpha above dim', () => {
	const f = find({...baseMeta, ss_network_alpha: '32'}, 'alpha-above-dim', model([module('a', {alpha: 32})]));
	assertWellFormed(f);
	assert.match(f.reason, /Alpha 32 with dim 16/);
	assert.match(f.reason, /by 2\b/);
	assert.ok(!ids({...baseMeta, ss_network_alpha: '16'}, model([module('a', {alpha: 16})])).includes('alpha-above-dim'));
	// Without metadata, the tensors' rank and alpha are used.
	const fromTensors = find({}, 'alpha-above-dim', model([module('a', {rank: 4, alpha: 8})]));
	assertWellFormed(fromTensors);
	assert.match(fromTensors.reason, /tensors/);
});

test('tiny alpha/dim with a default-sized LR', () => {
	const meta = {...baseMeta, ss_network_dim: '128', ss_network_alpha: '1'};
	const m = model([module('a', {rank: 128, alpha: 1})]);
	const f = find(meta, 'tiny-scale', m);
	assertWellFormed(f);
	assert.match(f.reason, /1 \/ dim 128/);
	assert.match(f.reason, /0\.0078|7\.81e-3/);
	// With a proportionally larger LR it is fine.
	assert.ok(!ids({...meta, ss_learning_rate: '0.01', ss_unet_lr: '0.01'}, m).includes('tiny-scale'));
	// alpha 1 at dim 32 (scale 1/32) is a common default: not reported.
	assert.ok(!ids({...baseMeta, ss_network_dim: '32', ss_network_alpha: '1'}, model([module('a', {rank: 32, alpha: 1})])).includes('tiny-scale'));
});

test('NaN/Inf weights', () => {
	const s = stats({nonFiniteValues: 7, modules: [{name: 'lora_unet_x\x1b[2J', block: 'IN01', blockOrder: 1, component: 'unet', rank: 16, alpha: 8, norm: null, nonFinite: 7}]});
	const f = find(baseMeta, 'non-finite-weights', healthyModel, s);
	assertWellFormed(f);
	assert.equal(f.severity, 'warning');
	assert.match(f.reason, /^7 values/);
	assert.match(f.reason, /lora_unet_x/);
	assert.ok(!ids(baseMeta, healthyModel, stats()).includes('non-finite-weights'));
});

test('modules whose update is exactly zero', () => {
	const some = find(baseMeta, 'zero-modules', healthyModel, stats({zeroModules: ['lora_te_c']}));
	assertWellFormed(some);
	assert.equal(some.severity, 'note');
	assert.match(some.reason, /1 of 3 module/);
	const all = find(baseMeta, 'zero-modules', healthyModel, stats({zeroModules: ['lora_unet_a', 'lora_unet_b', 'lora_te_c'], unetNorm: 0, teNorm: 0}));
	assertWellFormed(all);
	assert.equal(all.severity, 'warning');
	const many = find(baseMeta, 'zero-modules', healthyModel, stats({zeroModules: ['a', 'b', 'c', 'd', 'e']}));
	assertWellFormed(many);
	assert.match(many.reason, /and 2 more/);
	assert.ok(!ids(baseMeta).includes('zero-modules'));
});

test('TE share of the update dwarfing the UNet', () => {
	const f = find(baseMeta, 'te-dominates', healthyModel, stats({teNorm: 40, unetNorm: 10}));
	assertWellFormed(f);
	assert.equal(f.severity, 'warning');
	assert.match(f.reason, /4×/);
	const mild = find(baseMeta, 'te-dominates', healthyModel, stats({teNorm: 12, unetNorm: 10}));
	assertWellFormed(mild);
	assert.equal(mild.severity, 'note');
	assert.ok(!ids(baseMeta, healthyModel, stats({teNorm: 5, unetNorm: 10})).includes('te-dominates'));
	assert.ok(!ids(baseMeta, healthyModel, stats({teNorm: 0, unetNorm: 0})).includes('te-dominates'));
});

test('metadata dim/alpha contradicted by the tensors', () => {
	// Resized to rank 8 by a tool that left ss_network_dim/alpha at 16/8.
	const resized = model([module('a', {rank: 8, alpha: 4}), module('b', {rank: 8, alpha: 4})]);
	const f = find(baseMeta, 'metadata-weights-mismatch', resized);
	assertWellFormed(f);
	assert.match(f.reason, /ss_network_dim says 16, the tensors have rank 8/);
	assert.match(f.reason, /ss_network_alpha says 8, the alpha tensors hold 4/);
	// fp16-rounded alpha tensors still agree.
	assert.ok(!ids({...baseMeta, ss_network_alpha: '0.1'}, model([module('a', {alpha: 0.0999755859375})])).includes('metadata-weights-mismatch'));
	// Dynamic (after a dynamic resize) is not contradicted by varying ranks.
	const dynamic = model([module('a', {rank: 3}), module('b', {rank: 11})]);
	assert.ok(!ids({...baseMeta, ss_network_dim: 'Dynamic', ss_network_alpha: 'Dynamic'}, dynamic).includes('metadata-weights-mismatch'));
	// Conv modules follow conv_dim / conv_alpha.
	const locon = model([module('a'), module('c', {kind: 'convkxk', rank: 4, alpha: 1})]);
	const loconMeta = {...baseMeta, ss_network_args: '{"conv_dim": "4", "conv_alpha": "1"}'};
	assert.ok(!ids(loconMeta, locon).includes('metadata-weights-mismatch'));
	assert.match(find({...baseMeta, ss_network_args: '{"conv_dim": "8", "conv_alpha": "1"}'}, 'metadata-weights-mismatch', locon)!.reason, /conv dim 8/);
	// Alphas filled in from the metadata cannot contradict it.
	assert.ok(!ids({...baseMeta, ss_network_alpha: '8'}, model([module('a', {alpha: 16, alphaSource: 'metadata'})])).includes('metadata-weights-mismatch'));
	// No rank known (e.g. unfactorised LoKr): nothing to compare.
	assert.ok(!ids(baseMeta, model([module('a', {rank: null, alpha: null})])).includes('metadata-weights-mismatch'));
});

test('missing or minimal metadata', () => {
	const none = find({format: 'pt'}, 'missing-metadata', healthyModel, null);
	assertWellFormed(none);
	assert.match(none.reason, /writes no training metadata/);
	const minimal = find({ss_network_dim: '16', ss_network_alpha: '8', ss_network_module: 'networks.lora'}, 'minimal-metadata');
	assertWellFormed(minimal);
	// ai-toolkit writes a few ss_* keys but no settings.
	const aiToolkit = find({ss_output_name: 'x', ss_tag_frequency: '{}', software: '{"name": "ai-toolkit", "version": "0.1.0"}'}, 'minimal-metadata');
	assertWellFormed(aiToolkit);
	assert.match(aiToolkit.reason, /written by ai-toolkit/);
	assert.ok(!ids(baseMeta).includes('missing-metadata'));
	assert.ok(!ids(baseMeta).includes('minimal-metadata'));
});

test('base model in the metadata disagrees with the weights', () => {
	// The real ai-toolkit Flux file says sd_1.5.
	const flux = model([module('transformer.single_transformer_blocks.0.proj_out', {alpha: null, alphaSource: 'default'})], {arch: 'flux', metadataArch: 'sd1'});
	const f = find({ss_base_model_version: 'sd_1.5'}, 'arch-mismatch', flux, null);
	assertWellFormed(f);
	assert.match(f.reason, /"sd_1\.5" \(SD 1\.x\)/);
	assert.match(f.reason, /Flux/);
	// model.metadataArch missing: fall back to parsing ss_base_model_version.
	assert.ok(ids({ss_base_model_version: 'sdxl_base_v1-0'}, model([module('a')], {arch: 'sd1'}), null).includes('arch-mismatch'));
	assert.ok(!ids(baseMeta).includes('arch-mismatch'));
	assert.ok(!ids(baseMeta, model([module('a')], {arch: 'unknown', metadataArch: 'sd1'})).includes('arch-mismatch'));
});

test('unreadable metadata values are reported as a note', () => {
	const f = find({...baseMeta, ss_tag_frequency: '{oops', ss_seed: 'x'}, 'unreadable-metadata');
	assertWellFormed(f);
	assert.match(f.reason, /ss_tag_frequency/);
	assert.match(f.reason, /ss_seed/);
});

test('works without a model or stats', () => {
	assert.doesNotThrow(() => findTrainingIssues({training: parseTraining({}), model: null, stats: null}));
	assert.deepEqual(
		findTrainingIssues({training: parseTraining(baseMeta), model: null, stats: null}).map(f => f.id),
		[],
	);
});

const realDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '../shared/real-loras');
const missing = !existsSync(realDir);

test('real files: findings from their metadata and weights', {skip: missing ? 'needs ../shared/real-loras' : false}, async () => {
	const expected: Record<string, string[]> = {
		// Says sd_1.5 but holds Flux layers; records no settings.
		'aitoolkit_flux_peft_transformer_4layers_r16.safetensors': ['minimal-metadata', 'arch-mismatch'],
		'cloneofsimo_sd15_analog_svd_r4_f16.safetensors': ['missing-metadata'],
		'diffusers_sd15_attnprocs_noprefix_r4_f32.safetensors': ['missing-metadata'],
		'diffusers_sd15_unet_loradown_r4_f32.safetensors': ['missing-metadata'],
		// TE LR 1.5e-4 is half the UNet's 3e-4, dim 4 / alpha 4 match the tensors.
		'lycoris_lokr_sd15_kohya_dim4_smart_falcon.safetensors': [],
	};
	for (const [file, want] of Object.entries(expected)) {
		const header = await readHeader(path.join(realDir, file));
		const reader = await TensorReader.open(header);
		try {
			const m = await loadLoraModel(header, async name => reader.read(name));
			const found = findTrainingIssues({training: parseTraining(header.metadata), model: m, stats: null});
			for (const f of found) {
				assertWellFormed(f);
			}

			assert.deepEqual(found.map(f => f.id), want, file);
		} finally {
			await reader.close();
		}
	}
});
