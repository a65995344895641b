import assert from 'node:assert/strict';
import {existsSync} from 'node:fs';
import path from 'node:path';
import {test} from 'node:test';
import {fileURLToPath} from 'node:url';
import {dtypeSize} from '../source/lora/dtypes.js';
import {blockNamesFor, blockOrderOf} from '../source/lora/blocks.js';
import {alphaTensorKeys, buildLoraModel, formatKeyStyle, loadLoraModel} from '../source/lora/model.js';
import {formatArch} from '../source/lora/arch.js';
import {LoraFileError, parseHeaderBytes, readHeader, TensorReader} from '../source/lora/safetensors.js';
import type {Arch, DType, LoraModel, LoraModule, SafetensorsHeader} from '../source/lora/types.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const realDir = path.resolve(root, '../shared/real-loras');
const missing = !existsSync(realDir);
const skipReal = missing ? 'needs ../shared/real-loras' : false;

type Entry = [name: string, shape: number[], dtype?: DType];

/** A header built in memory: offsets are laid out back to back, no tensor bytes exist. */
function makeHeader(entries: Entry[], metadata: Record<string, string> = {}): SafetensorsHeader {
	const json: Record<string, unknown> = {};
	if (Object.keys(metadata).length > 0) {
		json['__metadata__'] = metadata;
	}

	let offset = 0;
	for (const [name, shape, dtype = 'F16'] of entries) {
		const bytes = shape.reduce((a, b) => a * b, 1) * dtypeSize[dtype];
		json[name] = {dtype, shape, data_offsets: [offset, offset + bytes]};
		offset += bytes;
	}

	const headerBytes = new TextEncoder().encode(JSON.stringify(json));
	return parseHeaderBytes('memory.safetensors', headerBytes, 8 + headerBytes.length + offset, 0);
}

/** kohya LoRA tensors of one linear module: down r×in, up out×r, optional 0-d alpha. */
function kohyaLinear(name: string, out: number, inDim: number, rank: number, alpha = true): Entry[] {
	const entries: Entry[] = [[`${name}.lora_down.weight`, [rank, inDim]], [`${name}.lora_up.weight`, [out, rank]]];
	if (alpha) {
		entries.push([`${name}.alpha`, []]);
	}

	return entries;
}

function kohyaConv(name: string, out: number, inDim: number, rank: number, k: number, alpha = true): Entry[] {
	const entries: Entry[] = [[`${name}.lora_down.weight`, [rank, inDim, k, k]], [`${name}.lora_up.weight`, [out, rank, 1, 1]]];
	if (alpha) {
		entries.push([`${name}.alpha`, []]);
	}

	return entries;
}

function peftLinear(name: string, out: number, inDim: number, rank: number): Entry[] {
	return [[`${name}.lora_A.weight`, [rank, inDim]], [`${name}.lora_B.weight`, [out, rank]]];
}

function moduleNamed(model: LoraModel, name: string): LoraModule {
	const module = model.modules.find(m => m.name === name);
	assert.ok(module, `module ${name} exists; have ${model.modules.slice(0, 5).map(m => m.name).join(', ')}`);
	return module;
}

function blocksOf(model: LoraModel): Map<string, number> {
	const counts = new Map<string, number>();
	for (const module of model.modules) {
		counts.set(module.block, (counts.get(module.block) ?? 0) + 1);
	}

	return counts;
}

// --- real files -------------------------------------------------------------------------------

async function realModel(file: string, withAlpha = true): Promise<LoraModel> {
	const header = await readHeader(path.join(realDir, file));
	if (!withAlpha) {
		return buildLoraModel(header);
	}

	const reader = await TensorReader.open(header);
	try {
		return await loadLoraModel(header, async name => reader.read(name));
	} finally {
		await reader.close();
	}
}

test('real: ai-toolkit Flux PEFT file (metadata says sd_1.5)', {skip: skipReal}, async () => {
	const model = await realModel('aitoolkit_flux_peft_transformer_4layers_r16.safetensors');
	assert.equal(model.keyStyle, 'peft');
	assert.equal(model.networkType, 'LoRA');
	assert.equal(model.arch, 'flux');
	assert.equal(model.metadataArch, 'sd1');
	assert.equal(model.modules.length, 4);
	assert.equal(model.rank, 16);
	assert.equal(model.alpha, 16);
	assert.deepEqual(model.modules.map(m => m.block), ['S07', 'S12', 'S16', 'S20']);
	const module = moduleNamed(model, 'transformer.single_transformer_blocks.12.proj_out');
	assert.equal(module.outDim, 3072);
	assert.equal(module.inDim, 15_360);
	assert.equal(module.alphaSource, 'default');
	assert.equal(module.scale, 1);
	assert.ok(model.warnings.some(w => /ss_base_model_version says SD1\.x .*Flux/.test(w)), model.warnings.join('\n'));
	assert.deepEqual(model.unknownTensors, []);
});

test('real: cloneofsimo SD1.5 safetensors maps indices by traversal order', {skip: skipReal}, async () => {
	const model = await realModel('cloneofsimo_sd15_analog_svd_r4_f16.safetensors');
	assert.equal(model.keyStyle, 'cloneofsimo');
	assert.equal(model.networkType, 'LoRA');
	assert.equal(model.arch, 'sd1');
	assert.equal(model.modules.length, 144 + 48);
	assert.equal(model.rank, 4);
	assert.equal(model.alpha, 4);
	assert.equal(model.dtype, 'F16');
	// Groups of 9 per transformer block: down_blocks (6), up_blocks (9), mid (1); attention-only
	// LoRAs populate IN01,02,04,05,07,08, M00, OUT03-11 (lora-formats.md §7.1).
	const expected = ['IN01', 'IN02', 'IN04', 'IN05', 'IN07', 'IN08', 'M00', 'OUT03', 'OUT04', 'OUT05', 'OUT06', 'OUT07', 'OUT08', 'OUT09', 'OUT10', 'OUT11'];
	assert.deepEqual([...blocksOf(model)], [...expected.map(b => [b, 9] as const), ['TE', 48]]);
	assert.equal(moduleNamed(model, 'unet:4').outDim, 2560);
	assert.equal(moduleNamed(model, 'unet:4').block, 'IN01');
	assert.equal(moduleNamed(model, 'unet:6').inDim, 768);
	assert.equal(moduleNamed(model, 'unet:54').block, 'OUT03');
	assert.equal(moduleNamed(model, 'unet:143').block, 'M00');
	assert.equal(moduleNamed(model, 'text_encoder:47').component, 'te');
	assert.deepEqual(model.warnings, []);
});

test('real: cloneofsimo .pt is refused by the reader, never modelled', {skip: skipReal}, async () => {
	await assert.rejects(readHeader(path.join(realDir, 'cloneofsimo_sd2_lora_pop_unet_list.pt')), (error: unknown) => {
		assert.ok(error instanceof LoraFileError);
		assert.match(error.reason, /pickle/);
		return true;
	});
});

test('real: diffusers attention-processor keys without prefix', {skip: skipReal}, async () => {
	const model = await realModel('diffusers_sd15_attnprocs_noprefix_r4_f32.safetensors');
	assert.equal(model.keyStyle, 'diffusers-attnproc');
	assert.equal(model.networkType, 'LoRA');
	assert.equal(model.arch, 'sd1');
	assert.equal(model.archEvidence, 'attn2 to_k in=768');
	assert.equal(model.modules.length, 128);
	assert.equal(model.rank, 4);
	assert.equal(model.alpha, 4);
	assert.equal(model.dtype, 'F32');
	assert.equal(moduleNamed(model, 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora').block, 'IN04');
	assert.equal(moduleNamed(model, 'up_blocks.3.attentions.2.transformer_blocks.0.attn2.processor.to_v_lora').block, 'OUT11');
	assert.equal(moduleNamed(model, 'mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora').block, 'M00');
	assert.equal(blocksOf(model).size, 16);
	assert.deepEqual(model.warnings, []);
});

test('real: diffusers unet.*.lora.down keys', {skip: skipReal}, async () => {
	const model = await realModel('diffusers_sd15_unet_loradown_r4_f32.safetensors');
	assert.equal(model.keyStyle, 'diffusers');
	assert.equal(model.networkType, 'LoRA');
	assert.equal(model.arch, 'sd1');
	assert.equal(model.modules.length, 128);
	assert.equal(model.rank, 4);
	assert.equal(model.alpha, 4);
	const module = moduleNamed(model, 'unet.down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k');
	assert.equal(module.block, 'IN08');
	assert.equal(module.inDim, 768);
	assert.equal(module.outDim, 1280);
	assert.equal(module.tensors['down'], 'unet.down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k.lora.down.weight');
	assert.equal(moduleNamed(model, 'unet.up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q').block, 'OUT03');
});

test('real: LyCORIS LoKr in kohya names with alpha tensors', {skip: skipReal}, async () => {
	const file = 'lycoris_lokr_sd15_kohya_dim4_smart_falcon.safetensors';
	const model = await realModel(file);
	assert.equal(model.keyStyle, 'lycoris');
	assert.equal(model.networkType, 'LoKr');
	assert.equal(model.arch, 'sd1');
	assert.equal(model.metadataArch, null);
	assert.equal(model.modules.length, 350);
	assert.equal(model.rank, 4);
	// Independent read of one alpha tensor.
	const header = await readHeader(path.join(realDir, file));
	const reader = await TensorReader.open(header);
	const alpha = (await reader.read('lora_unet_down_blocks_0_downsamplers_0_conv.alpha'))[0]!;
	await reader.close();
	assert.equal(model.alpha, alpha);
	const conv = moduleNamed(model, 'lora_unet_down_blocks_0_downsamplers_0_conv');
	assert.equal(conv.block, 'IN03');
	assert.equal(conv.kind, 'convkxk');
	assert.deepEqual(conv.kernel, [3, 3]);
	assert.equal(conv.outDim, 20 * 16);
	assert.equal(conv.inDim, 60 * 48);
	assert.equal(conv.rank, 4);
	assert.equal(conv.alphaSource, 'tensor');
	assert.equal(conv.scale, alpha / 4);
	assert.equal(moduleNamed(model, 'lora_unet_up_blocks_0_upsamplers_0_conv').block, 'OUT02');
	assert.equal(moduleNamed(model, 'lora_unet_down_blocks_3_resnets_1_conv2').block, 'IN11');
	assert.equal(moduleNamed(model, 'lora_te_text_model_encoder_layers_0_mlp_fc1').block, 'TE');
	// All 24 U-Net indices 1-24 are populated.
	const blocks = blocksOf(model);
	for (const name of blockNamesFor('sd1')) {
		assert.ok(blocks.has(name), `block ${name} populated`);
	}

	// Header-only: alpha lives in tensor data.
	const headerOnly = await realModel(file, false);
	assert.equal(moduleNamed(headerOnly, conv.name).alpha, null);
	assert.equal(moduleNamed(headerOnly, conv.name).alphaSource, 'tensor');
	assert.equal(alphaTensorKeys(header).length, 350);
});

// --- synthetic headers: kohya -------------------------------------------------------------------

const sd1Prefix = 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0';

test('kohya SD1: UNet + TE, LoCon 3x3 with conv_alpha, alpha tensor vs metadata', () => {
	const header = makeHeader([
		...kohyaLinear(`${sd1Prefix}_attn2_to_k`, 640, 768, 8),
		...kohyaLinear('lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn1_to_q', 320, 320, 8),
		...kohyaConv('lora_unet_mid_block_attentions_0_proj_in', 1280, 1280, 8, 1),
		...kohyaConv('lora_unet_down_blocks_0_resnets_0_conv1', 320, 320, 4, 3, false),
		...kohyaConv('lora_unet_down_blocks_0_downsamplers_0_conv', 320, 320, 4, 3, false),
		...kohyaConv('lora_unet_up_blocks_1_upsamplers_0_conv', 1280, 1280, 4, 3, false),
		...kohyaConv('lora_unet_down_blocks_3_resnets_1_conv2', 1280, 1280, 4, 3, false),
		...kohyaLinear('lora_te_text_model_encoder_layers_0_self_attn_q_proj', 768, 768, 8, false),
		...kohyaLinear('lora_te_text_model_encoder_layers_0_self_attn_k_proj', 768, 768, 8, false),
	], {
		ss_network_module: 'networks.lora',
		ss_network_dim: '8',
		ss_network_alpha: '4.0',
		ss_network_args: JSON.stringify({conv_dim: '4', conv_alpha: '2'}),
		ss_base_model_version: 'sd_v1',
	});
	const alphas = new Map([[`${sd1Prefix}_attn2_to_k.alpha`, 16], ['lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn1_to_q.alpha', 0]]);
	const model = buildLoraModel(header, alphas);
	assert.equal(model.keyStyle, 'kohya');
	assert.equal(model.networkType, 'LoCon');
	assert.equal(model.arch, 'sd1');
	assert.equal(model.metadataArch, 'sd1');
	assert.equal(model.modules.length, 9);
	assert.equal(model.rank, 8);
	assert.deepEqual(model.warnings, []);

	const k = moduleNamed(model, `${sd1Prefix}_attn2_to_k`);
	assert.deepEqual([k.block, k.kind, k.rank, k.alpha, k.alphaSource, k.scale, k.outDim, k.inDim], ['IN04', 'linear', 8, 16, 'tensor', 2, 640, 768]);
	const q = moduleNamed(model, 'lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn1_to_q');
	// kohya: alpha 0 means alpha = rank.
	assert.deepEqual([q.block, q.alpha, q.scale], ['OUT11', 8, 1]);
	const projIn = moduleNamed(model, 'lora_unet_mid_block_attentions_0_proj_in');
	assert.deepEqual([projIn.block, projIn.kind, projIn.kernel, projIn.inDim], ['M00', 'conv1x1', [1, 1], 1280]);
	// The alpha tensor exists but its value was not supplied.
	assert.deepEqual([projIn.alpha, projIn.alphaSource, projIn.scale], [null, 'tensor', 1]);
	const conv = moduleNamed(model, 'lora_unet_down_blocks_0_resnets_0_conv1');
	assert.deepEqual([conv.block, conv.kind, conv.kernel, conv.inDim, conv.rank, conv.alpha, conv.alphaSource, conv.scale], ['IN01', 'convkxk', [3, 3], 2880, 4, 2, 'conv-metadata', 0.5]);
	assert.equal(moduleNamed(model, 'lora_unet_down_blocks_0_downsamplers_0_conv').block, 'IN03');
	assert.equal(moduleNamed(model, 'lora_unet_up_blocks_1_upsamplers_0_conv').block, 'OUT05');
	assert.equal(moduleNamed(model, 'lora_unet_down_blocks_3_resnets_1_conv2').block, 'IN11');
	const te = moduleNamed(model, 'lora_te_text_model_encoder_layers_0_self_attn_q_proj');
	assert.deepEqual([te.component, te.block, te.alpha, te.alphaSource, te.scale], ['te', 'TE', 4, 'metadata', 0.5]);
	// Display order: blocks in architecture order, TE last.
	assert.deepEqual(model.modules.map(m => m.block), ['IN01', 'IN03', 'IN04', 'IN11', 'M00', 'OUT05', 'OUT11', 'TE', 'TE']);
	assert.deepEqual(model.unknownTensors, []);
});

test('kohya SD1 block table (lora-formats.md §7.1)', () => {
	const cases: Array<[string, string]> = [
		['down_blocks_0_attentions_0', 'IN01'],
		['down_blocks_0_resnets_1', 'IN02'],
		['down_blocks_0_downsamplers_0', 'IN03'],
		['down_blocks_1_attentions_0', 'IN04'],
		['down_blocks_1_attentions_1', 'IN05'],
		['down_blocks_1_downsamplers_0', 'IN06'],
		['down_blocks_2_resnets_0', 'IN07'],
		['down_blocks_2_attentions_1', 'IN08'],
		['down_blocks_2_downsamplers_0', 'IN09'],
		['down_blocks_3_resnets_0', 'IN10'],
		['down_blocks_3_resnets_1', 'IN11'],
		['mid_block_resnets_1', 'M00'],
		['up_blocks_0_resnets_0', 'OUT00'],
		['up_blocks_0_resnets_2', 'OUT02'],
		['up_blocks_0_upsamplers_0', 'OUT02'],
		['up_blocks_1_attentions_0', 'OUT03'],
		['up_blocks_1_upsamplers_0', 'OUT05'],
		['up_blocks_2_attentions_1', 'OUT07'],
		['up_blocks_2_upsamplers_0', 'OUT08'],
		['up_blocks_3_attentions_0', 'OUT09'],
		['up_blocks_3_attentions_2', 'OUT11'],
	];
	const entries: Entry[] = [...kohyaLinear(`${sd1Prefix}_attn2_to_k`, 640, 768, 4)];
	for (const [path] of cases) {
		entries.push(...kohyaConv(`lora_unet_${path}_conv`, 320, 320, 4, 3));
	}

	const model = buildLoraModel(makeHeader(entries));
	assert.equal(model.arch, 'sd1');
	for (const [path, block] of cases) {
		assert.equal(moduleNamed(model, `lora_unet_${path}_conv`).block, block, path);
	}
});

test('kohya SDXL: te1/te2, LDM block names', () => {
	const header = makeHeader([
		...kohyaLinear('lora_unet_input_blocks_7_1_transformer_blocks_0_attn2_to_k', 1280, 2048, 16),
		...kohyaLinear('lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q', 640, 640, 16),
		...kohyaLinear('lora_unet_middle_block_1_transformer_blocks_9_ff_net_2', 1280, 5120, 16),
		...kohyaLinear('lora_unet_output_blocks_0_1_proj_in', 1280, 1280, 16),
		...kohyaLinear('lora_unet_output_blocks_5_1_transformer_blocks_1_attn2_to_v', 640, 2048, 16),
		...kohyaConv('lora_unet_input_blocks_1_0_in_layers_2', 320, 320, 8, 3),
		...kohyaConv('lora_unet_input_blocks_3_0_op', 320, 320, 8, 3),
		...kohyaConv('lora_unet_output_blocks_2_2_conv', 1280, 1280, 8, 3),
		...kohyaLinear('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 768, 768, 16),
		...kohyaLinear('lora_te2_text_model_encoder_layers_31_mlp_fc1', 5120, 1280, 16),
	], {ss_base_model_version: 'sdxl_base_v1-0', ss_network_alpha: '8'});
	const model = buildLoraModel(header);
	assert.equal(model.keyStyle, 'kohya');
	assert.equal(model.networkType, 'LoCon');
	assert.equal(model.arch, 'sdxl');
	assert.equal(model.archEvidence, 'attn2 to_k in=2048');
	assert.equal(model.metadataArch, 'sdxl');
	assert.equal(model.rank, 16);
	assert.deepEqual(model.warnings, []);
	const expected: Record<string, string> = {
		lora_unet_input_blocks_7_1_transformer_blocks_0_attn2_to_k: 'IN07',
		lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q: 'IN04',
		lora_unet_middle_block_1_transformer_blocks_9_ff_net_2: 'M00',
		lora_unet_output_blocks_0_1_proj_in: 'OUT00',
		lora_unet_output_blocks_5_1_transformer_blocks_1_attn2_to_v: 'OUT05',
		lora_unet_input_blocks_1_0_in_layers_2: 'IN01',
		lora_unet_input_blocks_3_0_op: 'IN03',
		lora_unet_output_blocks_2_2_conv: 'OUT02',
		lora_te1_text_model_encoder_layers_0_self_attn_q_proj: 'TE1',
		lora_te2_text_model_encoder_layers_31_mlp_fc1: 'TE2',
	};
	for (const [name, block] of Object.entries(expected)) {
		assert.equal(moduleNamed(model, name).block, block, name);
	}

	assert.equal(moduleNamed(model, 'lora_te2_text_model_encoder_layers_31_mlp_fc1').component, 'te2');
	assert.deepEqual(blockNamesFor('sdxl', model), [
		'IN00', 'IN01', 'IN02', 'IN03', 'IN04', 'IN05', 'IN06', 'IN07', 'IN08', 'M00',
		'OUT00', 'OUT01', 'OUT02', 'OUT03', 'OUT04', 'OUT05', 'OUT06', 'OUT07', 'OUT08', 'TE1', 'TE2',
	]);
});

test('SDXL without cross-attention: UNet-only LDM names, TE-only, diffusers-named kohya', () => {
	const unetOnly = buildLoraModel(makeHeader(kohyaLinear('lora_unet_input_blocks_8_1_transformer_blocks_5_attn1_to_q', 1280, 1280, 4)));
	assert.equal(unetOnly.arch, 'sdxl');
	const teOnly = buildLoraModel(makeHeader([
		...kohyaLinear('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 768, 768, 4),
		...kohyaLinear('lora_te2_text_model_encoder_layers_0_self_attn_q_proj', 1280, 1280, 4),
	]));
	assert.equal(teOnly.arch, 'sdxl');
	// Files converted by diffusers keep diffusers paths even for SDXL (3 down blocks).
	const converted = buildLoraModel(makeHeader([
		...kohyaLinear('lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn2_to_k', 640, 2048, 4),
		...kohyaLinear('lora_unet_up_blocks_0_attentions_2_transformer_blocks_9_attn1_to_q', 1280, 1280, 4),
		...kohyaConv('lora_unet_down_blocks_1_downsamplers_0_conv', 640, 640, 4, 3),
	]));
	assert.equal(converted.arch, 'sdxl');
	assert.equal(moduleNamed(converted, 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn2_to_k').block, 'IN04');
	assert.equal(moduleNamed(converted, 'lora_unet_up_blocks_0_attentions_2_transformer_blocks_9_attn1_to_q').block, 'OUT02');
	assert.equal(moduleNamed(converted, 'lora_unet_down_blocks_1_downsamplers_0_conv').block, 'IN06');
	// SD2: TE width 1024; cross-attention 1024.
	assert.equal(buildLoraModel(makeHeader(kohyaLinear('lora_te_text_model_encoder_layers_0_self_attn_q_proj', 1024, 1024, 4))).arch, 'sd2');
	assert.equal(buildLoraModel(makeHeader(kohyaLinear(`${sd1Prefix}_attn2_to_v`, 640, 1024, 4))).arch, 'sd2');
});

test('metadata arch claims and disagreement', () => {
	const sdxlWeights = kohyaLinear('lora_unet_input_blocks_7_1_transformer_blocks_0_attn2_to_k', 1280, 2048, 4);
	const disagree = buildLoraModel(makeHeader(sdxlWeights, {ss_base_model_version: 'sd_v1'}));
	assert.equal(disagree.arch, 'sdxl');
	assert.equal(disagree.metadataArch, 'sd1');
	assert.equal(disagree.warnings.length, 1);
	assert.match(disagree.warnings[0]!, /says SD1\.x but the weights look like SDXL/);
	const spec = buildLoraModel(makeHeader(sdxlWeights, {'modelspec.architecture': 'stable-diffusion-xl-v1-base/lora'}));
	assert.equal(spec.metadataArch, 'sdxl');
	assert.deepEqual(spec.warnings, []);
	const unknownWeights = makeHeader(kohyaLinear('lora_unet_something_else', 64, 64, 4), {'modelspec.architecture': 'flux-1-dev/lora'});
	const fromMetadata = buildLoraModel(unknownWeights);
	assert.equal(fromMetadata.arch, 'flux');
	assert.match(fromMetadata.archEvidence, /metadata only/);
	const nothing = buildLoraModel(makeHeader(kohyaLinear('lora_unet_something_else', 64, 64, 4)));
	assert.equal(nothing.arch, 'unknown');
	assert.equal(nothing.metadataArch, null);
	assert.equal(nothing.modules[0]!.block, '?');
	assert.equal(buildLoraModel(makeHeader(sdxlWeights, {ss_v2: 'True'})).metadataArch, 'sd2');
});

const fluxQkv = 'lora_unet_double_blocks_0_img_attn_qkv';
const fluxLinear1 = 'lora_unet_single_blocks_37_linear1';

function fluxEntries(): Entry[] {
	return [
		...kohyaLinear(fluxQkv, 9216, 3072, 48),
		...kohyaLinear('lora_unet_double_blocks_18_txt_mlp_2', 3072, 12_288, 16),
		...kohyaLinear('lora_unet_double_blocks_3_img_mod_lin', 18_432, 3072, 16),
		...kohyaLinear(fluxLinear1, 21_504, 3072, 64),
		...kohyaLinear('lora_unet_single_blocks_0_linear2', 3072, 15_360, 16),
		...kohyaLinear('lora_unet_img_in', 3072, 64, 16),
		...kohyaLinear('lora_unet_final_layer_linear', 64, 3072, 16),
		...kohyaLinear('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 768, 768, 16),
		...kohyaLinear('lora_te3_encoder_block_0_layer_0_SelfAttention_q', 4096, 4096, 16),
	];
}

test('kohya Flux with split_qkv: true rank = rows / 3 (qkv) or / 4 (linear1)', () => {
	const metadata = {ss_network_module: 'networks.lora_flux', ss_network_dim: '16', ss_network_alpha: '8', ss_network_args: JSON.stringify({split_qkv: 'True'}), ss_base_model_version: 'flux1'};
	const model = buildLoraModel(makeHeader(fluxEntries(), metadata), new Map([[`${fluxQkv}.alpha`, 8], [`${fluxLinear1}.alpha`, 8]]));
	assert.equal(model.keyStyle, 'kohya');
	assert.equal(model.networkType, 'LoRA');
	assert.equal(model.arch, 'flux');
	assert.equal(model.metadataArch, 'flux');
	assert.equal(model.modules.length, 9);
	assert.equal(model.rank, 16);
	assert.deepEqual(model.warnings, []);
	const qkv = moduleNamed(model, fluxQkv);
	assert.deepEqual([qkv.rank, qkv.splitQkv, qkv.alpha, qkv.scale, qkv.block, qkv.outDim, qkv.inDim], [16, 3, 8, 0.5, 'D00', 9216, 3072]);
	const linear1 = moduleNamed(model, fluxLinear1);
	assert.deepEqual([linear1.rank, linear1.splitQkv, linear1.scale, linear1.block], [16, 4, 0.5, 'S37']);
	assert.equal(moduleNamed(model, 'lora_unet_double_blocks_18_txt_mlp_2').splitQkv, undefined);
	assert.equal(moduleNamed(model, 'lora_unet_double_blocks_18_txt_mlp_2').block, 'D18');
	assert.equal(moduleNamed(model, 'lora_unet_single_blocks_0_linear2').block, 'S00');
	assert.equal(moduleNamed(model, 'lora_unet_img_in').block, 'IN');
	assert.equal(moduleNamed(model, 'lora_unet_final_layer_linear').block, 'OUT');
	assert.equal(moduleNamed(model, 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj').block, 'TE1');
	assert.equal(moduleNamed(model, 'lora_te3_encoder_block_0_layer_0_SelfAttention_q').block, 'TE3');
	const names = blockNamesFor('flux', model);
	assert.equal(names.length, 1 + 19 + 38 + 1 + 2);
	assert.deepEqual([names[0], names[1], names[19], names[20], names[57], names[58], names[59], names[60]], ['IN', 'D00', 'D18', 'S00', 'S37', 'OUT', 'TE1', 'TE3']);

	// No flag, but ss_network_dim = 16 and qkv/linear1 hold exactly 3·16 / 4·16 rows.
	const byDim = buildLoraModel(makeHeader(fluxEntries(), {ss_network_dim: '16'}));
	assert.equal(moduleNamed(byDim, fluxQkv).splitQkv, 3);
	assert.equal(moduleNamed(byDim, fluxLinear1).rank, 16);
	// No evidence at all: the stacked rank is all the header shows.
	const plain = buildLoraModel(makeHeader(fluxEntries()));
	assert.equal(moduleNamed(plain, fluxQkv).rank, 48);
	assert.equal(moduleNamed(plain, fluxQkv).splitQkv, undefined);
	// A flag with ranks that cannot split stays unsplit.
	const odd = buildLoraModel(makeHeader(kohyaLinear(fluxQkv, 9216, 3072, 16), {ss_network_args: '{"split_qkv": "True"}'}));
	assert.equal(moduleNamed(odd, fluxQkv).rank, 16);
});

test('SD3 joint blocks: kohya and diffusers names', () => {
	const model = buildLoraModel(makeHeader([
		...kohyaLinear('lora_unet_joint_blocks_0_x_block_attn_qkv', 4608, 1536, 16),
		...kohyaLinear('lora_unet_joint_blocks_23_context_block_mlp_fc2', 1536, 6144, 16),
		...kohyaLinear('lora_te2_text_model_encoder_layers_0_self_attn_q_proj', 1280, 1280, 16),
	], {ss_base_model_version: 'sd3'}));
	assert.equal(model.arch, 'sd3');
	assert.equal(model.networkType, 'LoRA');
	assert.equal(moduleNamed(model, 'lora_unet_joint_blocks_0_x_block_attn_qkv').block, 'J00');
	assert.equal(moduleNamed(model, 'lora_unet_joint_blocks_23_context_block_mlp_fc2').block, 'J23');
	const names = blockNamesFor('sd3', model);
	assert.equal(names.length, 24 + 3);
	assert.equal(names[23], 'J23');
	assert.deepEqual(names.slice(24), ['TE1', 'TE2', 'TE3']);

	const large = buildLoraModel(makeHeader(kohyaLinear('lora_unet_joint_blocks_30_x_block_attn_proj', 2432, 2432, 8)));
	assert.equal(blockNamesFor('sd3', large).filter(b => b.startsWith('J')).length, 38);

	const diffusers = buildLoraModel(makeHeader([
		...peftLinear('transformer.transformer_blocks.5.attn.to_q', 1536, 1536, 8),
		...peftLinear('transformer.context_embedder', 1536, 4096, 8),
	]));
	assert.equal(diffusers.arch, 'sd3');
	assert.equal(moduleNamed(diffusers, 'transformer.transformer_blocks.5.attn.to_q').block, 'J05');
	assert.equal(moduleNamed(diffusers, 'transformer.context_embedder').block, 'IN');
	assert.deepEqual(blockNamesFor('sd3', diffusers).slice(0, 2), ['IN', 'J00']);
});

// --- LyCORIS ----------------------------------------------------------------------------------------

test('LoHa plain, flattened conv and Tucker', () => {
	const q = `${sd1Prefix}_attn2_to_k`;
	const conv = 'lora_unet_down_blocks_0_resnets_0_conv1';
	const tucker = 'lora_unet_down_blocks_0_resnets_1_conv2';
	const model = buildLoraModel(makeHeader([
		[`${q}.hada_w1_a`, [640, 8]], [`${q}.hada_w1_b`, [8, 768]], [`${q}.hada_w2_a`, [640, 8]], [`${q}.hada_w2_b`, [8, 768]], [`${q}.alpha`, []],
		[`${conv}.hada_w1_a`, [320, 4]], [`${conv}.hada_w1_b`, [4, 2880]], [`${conv}.hada_w2_a`, [320, 4]], [`${conv}.hada_w2_b`, [4, 2880]], [`${conv}.alpha`, []],
		[`${tucker}.hada_t1`, [4, 4, 3, 3]], [`${tucker}.hada_w1_a`, [4, 320]], [`${tucker}.hada_w1_b`, [4, 320]],
		[`${tucker}.hada_t2`, [4, 4, 3, 3]], [`${tucker}.hada_w2_a`, [4, 320]], [`${tucker}.hada_w2_b`, [4, 320]], [`${tucker}.alpha`, []],
		// w1 factors that do not chain: reported, not parsed.
		['lora_unet_mid_block_attentions_0_proj_out.hada_w1_a', [1280, 8]], ['lora_unet_mid_block_attentions_0_proj_out.hada_w1_b', [4, 1280]],
		['lora_unet_mid_block_attentions_0_proj_out.hada_w2_a', [1280, 8]], ['lora_unet_mid_block_attentions_0_proj_out.hada_w2_b', [8, 1280]],
	]), new Map([[`${q}.alpha`, 4], [`${conv}.alpha`, 2], [`${tucker}.alpha`, 4]]));
	assert.equal(model.keyStyle, 'lycoris');
	assert.equal(model.networkType, 'LoHa');
	assert.equal(model.arch, 'sd1');
	assert.equal(model.modules.length, 3);
	const linear = moduleNamed(model, q);
	assert.deepEqual([linear.algo, linear.kind, linear.rank, linear.scale, linear.outDim, linear.inDim, linear.block], ['loha', 'linear', 8, 0.5, 640, 768, 'IN04']);
	const flat = moduleNamed(model, conv);
	assert.deepEqual([flat.kind, flat.kernel, flat.rank, flat.inDim, flat.scale], ['convkxk', [3, 3], 4, 2880, 0.5]);
	const t = moduleNamed(model, tucker);
	assert.deepEqual([t.kind, t.kernel, t.rank, t.outDim, t.inDim, t.scale, t.block], ['convkxk', [3, 3], 4, 320, 2880, 1, 'IN02']);
	assert.equal(Object.keys(t.tensors).length, 7);
	assert.equal(model.warnings.length, 1);
	assert.match(model.warnings[0]!, /LoHa factors do not agree/);
	assert.equal(model.unknownTensors.length, 4);
});

test('LoKr: factorised, full (scale 1), conv full and Tucker', () => {
	const fact = 'lora_te_text_model_encoder_layers_0_self_attn_q_proj';
	const full = 'lora_te_text_model_encoder_layers_0_self_attn_k_proj';
	const conv = 'lora_unet_down_blocks_0_resnets_0_conv1';
	const tucker = 'lora_unet_down_blocks_0_resnets_0_conv2';
	const model = buildLoraModel(makeHeader([
		[`${fact}.lokr_w1`, [8, 8]], [`${fact}.lokr_w2_a`, [96, 4]], [`${fact}.lokr_w2_b`, [4, 96]], [`${fact}.alpha`, []],
		[`${full}.lokr_w1`, [8, 8]], [`${full}.lokr_w2`, [96, 96]], [`${full}.alpha`, []],
		[`${conv}.lokr_w1`, [8, 8]], [`${conv}.lokr_w2`, [40, 40, 3, 3]], [`${conv}.alpha`, []],
		[`${tucker}.lokr_w1_a`, [8, 2]], [`${tucker}.lokr_w1_b`, [2, 8]], [`${tucker}.lokr_t2`, [4, 4, 3, 3]], [`${tucker}.lokr_w2_a`, [4, 40]], [`${tucker}.lokr_w2_b`, [4, 40]], [`${tucker}.alpha`, []],
	]), new Map([[`${fact}.alpha`, 2], [`${full}.alpha`, 2], [`${conv}.alpha`, 4], [`${tucker}.alpha`, 2]]));
	assert.equal(model.networkType, 'LoKr');
	assert.equal(model.keyStyle, 'lycoris');
	assert.deepEqual(model.warnings, []);
	const f = moduleNamed(model, fact);
	assert.deepEqual([f.rank, f.outDim, f.inDim, f.scale, f.block], [4, 768, 768, 0.5, 'TE']);
	const u = moduleNamed(model, full);
	assert.deepEqual([u.rank, u.alpha, u.scale], [null, 2, 1]);
	const c = moduleNamed(model, conv);
	assert.deepEqual([c.kind, c.kernel, c.outDim, c.inDim, c.rank, c.scale], ['convkxk', [3, 3], 320, 2880, null, 1]);
	const t = moduleNamed(model, tucker);
	assert.deepEqual([t.kind, t.kernel, t.outDim, t.inDim, t.rank, t.scale, t.block], ['convkxk', [3, 3], 320, 2880, 4, 0.5, 'IN01']);
});

test('DoRA, IA3, OFT/BOFT, GLoRA, full diff and norms', () => {
	const q = `${sd1Prefix}_attn1_to_q`;
	const dora = buildLoraModel(makeHeader([...kohyaLinear(q, 640, 640, 8), [`${q}.dora_scale`, [640, 1]]]));
	assert.equal(dora.networkType, 'DoRA');
	assert.equal(dora.keyStyle, 'lycoris');
	assert.deepEqual([dora.modules[0]!.hasDora, dora.modules[0]!.needsBase, dora.modules[0]!.tensors['dora_scale']], [true, true, `${q}.dora_scale`]);

	const peftDora = buildLoraModel(makeHeader([...peftLinear('transformer.transformer_blocks.0.attn.to_q', 3072, 3072, 8), ['transformer.transformer_blocks.0.attn.to_q.lora_magnitude_vector', [3072]]]));
	assert.equal(peftDora.networkType, 'DoRA');
	assert.equal(peftDora.keyStyle, 'peft');

	const ia3 = buildLoraModel(makeHeader([[`${q}.weight`, [640]], [`${q}.on_input`, [], 'BOOL']]));
	assert.equal(ia3.networkType, 'IA3');
	assert.deepEqual([ia3.modules[0]!.algo, ia3.modules[0]!.rank, ia3.modules[0]!.needsBase, ia3.modules[0]!.outDim, ia3.modules[0]!.scale], ['ia3', null, true, 640, 1]);
	assert.equal(buildLoraModel(makeHeader([[`${q}.weight`, [640, 1]], [`${q}.on_input`, [], 'BOOL']])).modules[0]!.outDim, 640);
	const notVector = buildLoraModel(makeHeader([[`${q}.weight`, [640, 640]]]));
	assert.equal(notVector.modules.length, 0);
	assert.match(notVector.warnings.join('\n'), /is not a vector/);

	const oft = buildLoraModel(makeHeader([['oft_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.oft_blocks', [8, 80, 80]], ['oft_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.alpha', []]]));
	assert.equal(oft.networkType, 'OFT');
	assert.equal(oft.keyStyle, 'kohya');
	assert.deepEqual([oft.modules[0]!.outDim, oft.modules[0]!.rank, oft.modules[0]!.needsBase, oft.modules[0]!.block, oft.modules[0]!.component], [640, null, true, 'IN04', 'unet']);

	const boft = buildLoraModel(makeHeader([[`${q}.oft_blocks`, [2, 8, 80, 80]], [`${q}.alpha`, []]]));
	assert.equal(boft.networkType, 'BOFT');
	assert.equal(boft.keyStyle, 'lycoris');

	const glora = buildLoraModel(makeHeader([[`${q}.a1.weight`, [640, 8]], [`${q}.a2.weight`, [8, 640]], [`${q}.b1.weight`, [640, 8]], [`${q}.b2.weight`, [8, 640]], [`${q}.alpha`, []]]), new Map([[`${q}.alpha`, 4]]));
	assert.equal(glora.networkType, 'GLoRA');
	assert.deepEqual([glora.modules[0]!.rank, glora.modules[0]!.scale, glora.modules[0]!.needsBase], [8, 0.5, true]);

	const diff = buildLoraModel(makeHeader([[`${q}.diff`, [640, 640]], [`${q}.diff_b`, [640]], ['lora_unet_down_blocks_0_resnets_0_conv1.diff', [320, 320, 3, 3]]]));
	assert.equal(diff.networkType, 'Full');
	assert.deepEqual([diff.modules[0]!.kind, diff.modules[0]!.inDim, diff.modules[0]!.rank, diff.modules[0]!.needsBase], ['convkxk', 2880, null, false]);

	const withNorms = buildLoraModel(makeHeader([...kohyaLinear(q, 640, 640, 8), ['lora_unet_down_blocks_1_attentions_0_norm.w_norm', [640]], ['lora_unet_down_blocks_1_attentions_0_norm.b_norm', [640]]]));
	assert.equal(withNorms.networkType, 'LoRA');
	assert.equal(withNorms.modules.length, 2);
	assert.ok(withNorms.modules.some(m => m.algo === 'norm'));

	const mixed = buildLoraModel(makeHeader([...kohyaLinear(q, 640, 640, 8), [`${sd1Prefix}_attn1_to_k.hada_w1_a`, [640, 4]], [`${sd1Prefix}_attn1_to_k.hada_w1_b`, [4, 640]], [`${sd1Prefix}_attn1_to_k.hada_w2_a`, [640, 4]], [`${sd1Prefix}_attn1_to_k.hada_w2_b`, [4, 640]]]));
	assert.equal(mixed.networkType, 'mixed');
});

// --- diffusers / PEFT / cloneofsimo ----------------------------------------------------------------

test('PEFT with lora_adapter_metadata: prefixed keys, alpha_pattern, rsLoRA', () => {
	const q = 'transformer.transformer_blocks.0.attn.to_q';
	const proj = 'transformer.single_transformer_blocks.3.proj_out';
	const te = 'text_encoder.text_model.encoder.layers.0.self_attn.q_proj';
	const metadata = {
		format: 'pt',
		lora_adapter_metadata: JSON.stringify({
			'transformer.r': 4,
			'transformer.lora_alpha': 8,
			'transformer.use_rslora': true,
			'transformer.alpha_pattern': {'single_transformer_blocks.3.proj_out': 32},
			'text_encoder.r': 4,
			'text_encoder.lora_alpha': 2,
		}),
	};
	const model = buildLoraModel(makeHeader([...peftLinear(q, 3072, 3072, 4), ...peftLinear(proj, 3072, 15_360, 4), ...peftLinear(te, 768, 768, 4)], metadata));
	assert.equal(model.keyStyle, 'peft');
	assert.equal(model.arch, 'flux');
	const mq = moduleNamed(model, q);
	assert.deepEqual([mq.alpha, mq.alphaSource, mq.scale, mq.block], [8, 'peft', 8 / Math.sqrt(4), 'D00']);
	const mp = moduleNamed(model, proj);
	assert.deepEqual([mp.alpha, mp.scale, mp.block], [32, 32 / 2, 'S03']);
	const mt = moduleNamed(model, te);
	assert.deepEqual([mt.component, mt.block, mt.alpha, mt.scale], ['te1', 'TE1', 2, 0.5]);

	const plain = buildLoraModel(makeHeader(peftLinear(`base_model.model.${q}`, 3072, 3072, 16), {lora_adapter_metadata: '{"r": 16, "lora_alpha": 32, "alpha_pattern": {}}'}));
	assert.deepEqual([plain.modules[0]!.alpha, plain.modules[0]!.scale], [32, 2]);
	// Broken metadata JSON is ignored: alpha = rank.
	const broken = buildLoraModel(makeHeader(peftLinear(q, 3072, 3072, 16), {lora_adapter_metadata: '{"r": 16,'}));
	assert.deepEqual([broken.modules[0]!.alpha, broken.modules[0]!.alphaSource, broken.modules[0]!.scale], [16, 'default', 1]);
	// BFL names via ai-toolkit's diffusion_model prefix.
	const bfl = buildLoraModel(makeHeader([...peftLinear('diffusion_model.double_blocks.4.img_attn.qkv', 9216, 3072, 8), ['double_blocks.0.img_attn.norm.key_norm.scale', [128]]]));
	assert.equal(bfl.arch, 'flux');
	assert.equal(bfl.modules[0]!.block, 'D04');
	assert.deepEqual(bfl.unknownTensors, ['double_blocks.0.img_attn.norm.key_norm.scale']);
});

test('diffusers dialects: attention processors with/without unet. prefix, .lora.down, lora_linear_layer', () => {
	const attn = buildLoraModel(makeHeader([
		['unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.down.weight', [4, 768]],
		['unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.up.weight', [640, 4]],
		['up_blocks.3.attentions.2.transformer_blocks.0.attn1.processor.to_out_lora.down.weight', [4, 320]],
		['up_blocks.3.attentions.2.transformer_blocks.0.attn1.processor.to_out_lora.up.weight', [320, 4]],
		['text_encoder.text_model.encoder.layers.3.self_attn.to_q_lora.down.weight', [4, 768]],
		['text_encoder.text_model.encoder.layers.3.self_attn.to_q_lora.up.weight', [768, 4]],
	]));
	assert.equal(attn.keyStyle, 'diffusers-attnproc');
	assert.equal(attn.arch, 'sd1');
	assert.equal(moduleNamed(attn, 'unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora').block, 'IN04');
	assert.equal(moduleNamed(attn, 'up_blocks.3.attentions.2.transformer_blocks.0.attn1.processor.to_out_lora').block, 'OUT11');
	const te = moduleNamed(attn, 'text_encoder.text_model.encoder.layers.3.self_attn.to_q_lora');
	assert.deepEqual([te.component, te.block], ['te', 'TE']);

	const modern = buildLoraModel(makeHeader([
		['unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_v.lora.down.weight', [4, 1024]],
		['unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_v.lora.up.weight', [1280, 4]],
		['text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.down.weight', [4, 1024]],
		['text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.up.weight', [1024, 4]],
	]));
	assert.equal(modern.keyStyle, 'diffusers');
	assert.equal(modern.arch, 'sd2');
	assert.equal(moduleNamed(modern, 'unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_v').block, 'M00');
	assert.equal(moduleNamed(modern, 'text_encoder.text_model.encoder.layers.0.self_attn.q_proj').block, 'TE');

	const both = buildLoraModel(makeHeader([...attn.modules.flatMap(m => Object.values(m.tensors)).map((name): Entry => [name, name.endsWith('down.weight') ? [4, 768] : [768, 4]]), ['unet.x.to_k.lora.down.weight', [4, 8]], ['unet.x.to_k.lora.up.weight', [8, 4]]]));
	assert.equal(both.keyStyle, 'mixed');
	assert.equal(formatKeyStyle('diffusers-attnproc'), 'diffusers (attention processors)');
});

test('cloneofsimo: traversal order verified by shapes, else blocks unknown', () => {
	const channels = [320, 320, 640, 640, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320, 1280];
	const entries: Entry[] = [];
	let index = 0;
	for (const c of channels) {
		const slots: Array<[number, number]> = [[c, c], [c, c], [c, c], [c, c], [8 * c, c], [c, c], [c, 1024], [c, 1024], [c, c]];
		for (const [out, inDim] of slots) {
			entries.push([`unet:${index}:up`, [out, 4]], [`unet:${index}:down`, [4, inDim]]);
			index++;
		}
	}

	entries.push(['<s1>', [1024]]);
	const model = buildLoraModel(makeHeader(entries, {unet: '["CrossAttention", "Attention", "GEGLU"]', '<s1>': '<embed>'}));
	assert.equal(model.keyStyle, 'cloneofsimo');
	assert.equal(model.arch, 'sd2');
	assert.equal(moduleNamed(model, 'unet:0').block, 'IN01');
	assert.equal(moduleNamed(model, 'unet:20').block, 'IN04');
	assert.equal(moduleNamed(model, 'unet:62').block, 'OUT03');
	assert.equal(moduleNamed(model, 'unet:63').block, 'OUT04');
	assert.equal(moduleNamed(model, 'unet:143').block, 'M00');
	assert.deepEqual(model.unknownTensors, ['<s1>']);
	assert.deepEqual(model.warnings, []);

	// Swap two groups' shapes: the order no longer fits the U-Net, so no block is guessed.
	const broken = buildLoraModel(makeHeader(entries.map(([name, shape]): Entry => [name, name === 'unet:0:up' ? [640, 4] : shape])));
	assert.ok(broken.modules.filter(m => m.component === 'unet').every(m => m.block === '?'));
	assert.match(broken.warnings.join('\n'), /cloneofsimo U-Net index order not verified/);
});

// --- malformed input ----------------------------------------------------------------------------

test('malformed keys, up without down, down without up, rank mismatch: reported, never parsed', () => {
	const glued = `${sd1Prefix}_attn1_to_k`;
	const model = buildLoraModel(makeHeader([
		...kohyaLinear(`${sd1Prefix}_attn2_to_k`, 640, 768, 8),
		[`${glued}_lora_down.weight`, [8, 640]],
		[`${glued}_lora_up.weight`, [640, 8]],
		['unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k_lora_down.weight', [8, 320]],
		[`${sd1Prefix}_attn1_to_v.lora_up.weight`, [640, 8]],
		[`${sd1Prefix}_attn1_to_q.lora_down.weight`, [8, 640]],
		[`${sd1Prefix}_attn1_to_out_0.lora_down.weight`, [8, 640]],
		[`${sd1Prefix}_attn1_to_out_0.lora_up.weight`, [640, 4]],
		[`${sd1Prefix}_ff_net_2.alpha`, []],
		[`${sd1Prefix}_ff_net_0_proj.lora_down.weight`, [8]],
		[`${sd1Prefix}_ff_net_0_proj.lora_up.weight`, [5120, 8]],
		['lora_unet_\u001B[31mred.lora_down.weight', [0, 4]],
		['lora_unet_\u001B[31mred.lora_up.weight', [4, 0]],
	]));
	assert.equal(model.modules.length, 1);
	assert.equal(model.modules[0]!.name, `${sd1Prefix}_attn2_to_k`);
	const text = model.warnings.join('\n');
	assert.match(text, /malformed key.*'_' instead of '\.'.*3×/);
	assert.match(text, /up without down/);
	assert.match(text, /down without up/);
	assert.match(text, /rank mismatch: down has 8 rows, up has 4 columns/);
	assert.match(text, /alpha without any factor tensors/);
	assert.match(text, /down has shape \[8\]/);
	assert.doesNotMatch(text, /\u001B/);
	assert.equal(model.unknownTensors.length, 15 - 3);
	assert.match(text, /module not parsed: down has shape \[0,4\] \(lora_unet_\\u\{1b\}\[31mred\)/);
	assert.ok(model.unknownTensors.includes(`${glued}_lora_down.weight`));
});

test('odd input never throws', () => {
	const empty = buildLoraModel(makeHeader([]));
	assert.equal(empty.modules.length, 0);
	assert.equal(empty.networkType, 'unknown');
	assert.equal(empty.keyStyle, 'unknown');
	assert.deepEqual(empty.warnings, ['file has no tensors']);

	// Deterministic pseudo-random keys and shapes.
	let seed = 12_345;
	const next = (n: number): number => {
		seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
		return seed % n;
	};

	const parts = ['lora_down.weight', 'lora_up.weight', 'alpha', 'hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b', 'hada_t1', 'lokr_w1', 'lokr_w2_b', 'lokr_t2', 'oft_blocks', 'diff', 'weight', 'a1.weight', 'dora_scale', 'lora_mid.weight', 'lora_A.weight', 'lora_B.weight'];
	const prefixes = ['lora_unet_double_blocks_1_img_attn_qkv', 'lora_te2_x', 'unet.down_blocks.0.attentions.0', 'transformer.x', 'unet:1', 'lycoris_a', 'text_encoder_2.y'];
	for (let round = 0; round < 200; round++) {
		const entries = new Map<string, number[]>();
		for (let i = 0; i < 12; i++) {
			const shape = Array.from({length: next(5)}, () => next(6));
			entries.set(`${prefixes[next(prefixes.length)]!}.${parts[next(parts.length)]!}`, shape);
		}

		const model = buildLoraModel(makeHeader([...entries]), new Map([...entries.keys()].map(k => [k, next(3)])));
		assert.ok(!model.warnings.some(w => w.startsWith('internal error')), model.warnings.join('\n'));
		for (const module of model.modules) {
			assert.ok(module.outDim > 0 && module.inDim >= 0 && Number.isFinite(module.scale), JSON.stringify(module));
		}
	}
});

// --- blocks -------------------------------------------------------------------------------------

test('blockNamesFor and blockOrderOf agree for every architecture', () => {
	const arches: Arch[] = ['sd1', 'sd2', 'sdxl', 'sd3', 'flux', 'unknown'];
	for (const arch of arches) {
		const names = blockNamesFor(arch);
		const sorted = [...names].sort((a, b) => blockOrderOf(a) - blockOrderOf(b));
		assert.deepEqual(sorted, names, arch);
		assert.equal(new Set(names.map(n => blockOrderOf(n))).size, names.length, `${arch}: distinct orders`);
	}

	assert.deepEqual(blockNamesFor('sd1'), [
		'IN01', 'IN02', 'IN03', 'IN04', 'IN05', 'IN06', 'IN07', 'IN08', 'IN09', 'IN10', 'IN11', 'M00',
		'OUT00', 'OUT01', 'OUT02', 'OUT03', 'OUT04', 'OUT05', 'OUT06', 'OUT07', 'OUT08', 'OUT09', 'OUT10', 'OUT11', 'TE',
	]);
	assert.ok(blockOrderOf('?') > blockOrderOf('TE3'));
	assert.ok(blockOrderOf('IN') < blockOrderOf('D00') && blockOrderOf('S37') < blockOrderOf('OUT'));
	assert.equal(formatArch('sdxl'), 'SDXL');
	// Unplaceable modules get their own '?' bar at the end.
	const model = buildLoraModel(makeHeader([...kohyaLinear(`${sd1Prefix}_attn2_to_k`, 640, 768, 4), ...kohyaLinear('lora_unet_time_embedding_linear_1', 1280, 320, 4)]));
	assert.equal(moduleNamed(model, 'lora_unet_time_embedding_linear_1').block, '?');
	assert.equal(blockNamesFor('sd1', model).at(-1), '?');
});

test('hostile tensor names: very long names are refused quickly', () => {
	const long = `lora_unet_${'a.'.repeat(300_000)}_lora.down.weight`;
	const started = performance.now();
	const model = buildLoraModel(makeHeader([[long, [4, 4]], ...kohyaLinear(`${sd1Prefix}_attn2_to_k`, 640, 768, 4)]));
	assert.ok(performance.now() - started < 1000);
	assert.equal(model.modules.length, 1);
	assert.deepEqual(model.unknownTensors, [long]);
	assert.match(model.warnings.join('\n'), /longer than 1024 characters/);
	assert.ok(model.warnings.every(w => w.length < 400));
});

test('other Flux dialects: XLabs processors, OneTrainer names with T5 as te2 and DoRA', () => {
	const xlabs = buildLoraModel(makeHeader([
		['double_blocks.0.processor.qkv_lora1.down.weight', [16, 3072]],
		['double_blocks.0.processor.qkv_lora1.up.weight', [9216, 16]],
		['double_blocks.18.processor.proj_lora2.down.weight', [16, 3072]],
		['double_blocks.18.processor.proj_lora2.up.weight', [3072, 16]],
	]));
	assert.equal(xlabs.arch, 'flux');
	assert.equal(xlabs.keyStyle, 'diffusers-attnproc');
	assert.deepEqual(xlabs.modules.map(m => m.block), ['D00', 'D18']);

	const oneTrainer = buildLoraModel(makeHeader([
		...kohyaLinear('lora_transformer_single_transformer_blocks_0_attn_to_k', 3072, 3072, 16),
		['lora_transformer_single_transformer_blocks_0_attn_to_k.dora_scale', [1, 3072]],
		...kohyaLinear('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 768, 768, 16),
		...kohyaLinear('lora_te2_encoder_block_0_layer_0_SelfAttention_q', 4096, 4096, 16),
	]));
	assert.equal(oneTrainer.arch, 'flux');
	assert.equal(oneTrainer.networkType, 'DoRA');
	const t5 = moduleNamed(oneTrainer, 'lora_te2_encoder_block_0_layer_0_SelfAttention_q');
	assert.deepEqual([t5.component, t5.block], ['te3', 'TE3']);
	assert.equal(moduleNamed(oneTrainer, 'lora_transformer_single_transformer_blocks_0_attn_to_k').block, 'S00');
	assert.equal(moduleNamed(oneTrainer, 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj').block, 'TE1');
});
