import assert from 'node:assert/strict';
import {test} from 'node:test';
import {baseMapModulesOf, diffusersUnetToLdm, ldmUnetToDiffusers, mapModulesToBase} from '../source/lora/base-map.js';
import type {Component} from '../source/lora/types.js';

type Spec = {name: string; component: Component; down: string; out: number; in: number};

function modules(specs: Spec[]) {
	return baseMapModulesOf(specs.map(s => ({name: s.name, component: s.component, tensors: {down: s.down}, outDim: s.out, inDim: s.in})));
}

function kohya(name: string, out: number, inDim: number): Spec {
	const component: Component = name.startsWith('lora_te2_') ? 'te2' : name.startsWith('lora_te1_') ? 'te1' : name.startsWith('lora_te_') ? 'te' : 'unet';
	return {name, component, down: `${name}.lora_down.weight`, out, in: inDim};
}

function peft(name: string, component: Component, out: number, inDim: number): Spec {
	return {name, component, down: `${name}.lora_A.weight`, out, in: inDim};
}

test('SD1 kohya names map to LDM checkpoint keys', () => {
	const base = [
		{name: 'model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight', shape: [320, 320]},
		{name: 'model.diffusion_model.input_blocks.1.0.in_layers.2.weight', shape: [320, 320, 3, 3]},
		{name: 'model.diffusion_model.input_blocks.3.0.op.weight', shape: [320, 320, 3, 3]},
		{name: 'model.diffusion_model.middle_block.1.proj_in.weight', shape: [1280, 1280, 1, 1]},
		{name: 'model.diffusion_model.middle_block.2.skip_connection.weight', shape: [1280, 1280, 1, 1]},
		{name: 'model.diffusion_model.output_blocks.2.1.conv.weight', shape: [1280, 1280, 3, 3]},
		{name: 'model.diffusion_model.output_blocks.5.2.conv.weight', shape: [1280, 1280, 3, 3]},
		{name: 'model.diffusion_model.output_blocks.11.0.emb_layers.1.weight', shape: [320, 1280]},
		{name: 'model.diffusion_model.output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight', shape: [2560, 320]},
		{name: 'cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight', shape: [768, 768]},
		{name: 'first_stage_model.decoder.conv_in.weight', shape: [512, 4, 3, 3]},
	];
	const mods = modules([
		kohya('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q', 320, 320),
		kohya('lora_unet_down_blocks_0_resnets_0_conv1', 320, 2880),
		kohya('lora_unet_down_blocks_0_downsamplers_0_conv', 320, 2880),
		kohya('lora_unet_mid_block_attentions_0_proj_in', 1280, 1280),
		kohya('lora_unet_mid_block_resnets_1_conv_shortcut', 1280, 1280),
		kohya('lora_unet_up_blocks_0_upsamplers_0_conv', 1280, 11_520),
		kohya('lora_unet_up_blocks_1_upsamplers_0_conv', 1280, 11_520),
		kohya('lora_unet_up_blocks_3_resnets_2_time_emb_proj', 320, 1280),
		kohya('lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_0_proj', 2560, 320),
		kohya('lora_te_text_model_encoder_layers_0_self_attn_q_proj', 768, 768),
		kohya('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 768, 768),
	]);
	const {targets, unmapped} = mapModulesToBase(mods, base);
	assert.deepEqual(unmapped, []);
	const key = (name: string) => targets.get(name)?.key;
	assert.equal(key('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q'), base[0]!.name);
	assert.equal(key('lora_unet_down_blocks_0_resnets_0_conv1'), base[1]!.name);
	assert.equal(key('lora_unet_down_blocks_0_downsamplers_0_conv'), base[2]!.name);
	assert.equal(key('lora_unet_mid_block_attentions_0_proj_in'), base[3]!.name);
	assert.equal(key('lora_unet_mid_block_resnets_1_conv_shortcut'), base[4]!.name);
	assert.equal(key('lora_unet_up_blocks_0_upsamplers_0_conv'), base[5]!.name);
	assert.equal(key('lora_unet_up_blocks_1_upsamplers_0_conv'), base[6]!.name);
	assert.equal(key('lora_unet_up_blocks_3_resnets_2_time_emb_proj'), base[7]!.name);
	assert.equal(key('lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_0_proj'), base[8]!.name);
	assert.equal(key('lora_te_text_model_encoder_layers_0_self_attn_q_proj'), base[9]!.name);
	assert.equal(key('lora_te1_text_model_encoder_layers_0_self_attn_q_proj'), base[9]!.name);
	assert.equal(targets.get('lora_unet_down_blocks_0_resnets_0_conv1')!.rows, null);
});

test('SD2 OpenCLIP fused in_proj splits in q, k, v order', () => {
	const base = [
		{name: 'cond_stage_model.model.transformer.resblocks.3.attn.in_proj_weight', shape: [3072, 1024]},
		{name: 'cond_stage_model.model.transformer.resblocks.3.attn.out_proj.weight', shape: [1024, 1024]},
		{name: 'cond_stage_model.model.transformer.resblocks.3.mlp.c_fc.weight', shape: [4096, 1024]},
		{name: 'cond_stage_model.model.transformer.resblocks.3.mlp.c_proj.weight', shape: [1024, 4096]},
	];
	const mods = modules(['q', 'k', 'v', 'out'].map(p => kohya(`lora_te_text_model_encoder_layers_3_self_attn_${p}_proj`, 1024, 1024))
		.concat([kohya('lora_te_text_model_encoder_layers_3_mlp_fc1', 4096, 1024), kohya('lora_te_text_model_encoder_layers_3_mlp_fc2', 1024, 4096)]));
	const {targets, unmapped} = mapModulesToBase(mods, base);
	assert.deepEqual(unmapped, []);
	assert.deepEqual(targets.get('lora_te_text_model_encoder_layers_3_self_attn_q_proj')!.rows, [0, 1024]);
	assert.deepEqual(targets.get('lora_te_text_model_encoder_layers_3_self_attn_k_proj')!.rows, [1024, 2048]);
	assert.deepEqual(targets.get('lora_te_text_model_encoder_layers_3_self_attn_v_proj')!.rows, [2048, 3072]);
	assert.equal(targets.get('lora_te_text_model_encoder_layers_3_self_attn_out_proj')!.key, base[1]!.name);
	assert.equal(targets.get('lora_te_text_model_encoder_layers_3_mlp_fc2')!.key, base[3]!.name);
});

test('SDXL: kohya LDM names, PEFT diffusers names, both text encoders', () => {
	const base = [
		{name: 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight', shape: [640, 2048]},
		{name: 'model.diffusion_model.output_blocks.2.2.conv.weight', shape: [1280, 1280, 3, 3]},
		{name: 'conditioner.embedders.0.transformer.text_model.encoder.layers.5.self_attn.k_proj.weight', shape: [768, 768]},
		{name: 'conditioner.embedders.1.model.transformer.resblocks.7.attn.in_proj_weight', shape: [3840, 1280]},
		{name: 'conditioner.embedders.1.model.text_projection', shape: [1280, 1280]},
	];
	const mods = modules([
		kohya('lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k', 640, 2048),
		kohya('lora_unet_output_blocks_2_2_conv', 1280, 11_520),
		kohya('lora_te1_text_model_encoder_layers_5_self_attn_k_proj', 768, 768),
		kohya('lora_te2_text_model_encoder_layers_7_self_attn_k_proj', 1280, 1280),
		kohya('lora_te2_text_projection', 1280, 1280),
		peft('unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k', 'unet', 640, 2048),
		peft('unet.up_blocks.0.upsamplers.0.conv', 'unet', 1280, 11_520),
		peft('text_encoder_2.text_model.encoder.layers.7.self_attn.q_proj', 'te2', 1280, 1280),
	]);
	const {targets, unmapped} = mapModulesToBase(mods, base);
	assert.deepEqual(unmapped, []);
	assert.equal(targets.get('lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k')!.key, base[0]!.name);
	assert.equal(targets.get('unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k')!.key, base[0]!.name);
	assert.equal(targets.get('unet.up_blocks.0.upsamplers.0.conv')!.key, base[1]!.name);
	assert.equal(targets.get('lora_te1_text_model_encoder_layers_5_self_attn_k_proj')!.key, base[2]!.name);
	assert.deepEqual(targets.get('lora_te2_text_model_encoder_layers_7_self_attn_k_proj')!.rows, [1280, 2560]);
	assert.deepEqual(targets.get('text_encoder_2.text_model.encoder.layers.7.self_attn.q_proj')!.rows, [0, 1280]);
	assert.equal(targets.get('lora_te2_text_projection')!.key, base[4]!.name);
});

test('Flux BFL base: fused qkv whole for kohya, row slices for diffusers names', () => {
	const base = [
		{name: 'double_blocks.0.img_attn.qkv.weight', shape: [9216, 3072]},
		{name: 'double_blocks.0.txt_attn.proj.weight', shape: [3072, 3072]},
		{name: 'single_blocks.2.linear1.weight', shape: [21_504, 3072]},
		{name: 'single_blocks.2.linear2.weight', shape: [3072, 15_360]},
		{name: 'final_layer.linear.weight', shape: [64, 3072]},
	];
	const mods = modules([
		kohya('lora_unet_double_blocks_0_img_attn_qkv', 9216, 3072),
		peft('diffusion_model.double_blocks.0.img_attn.qkv', 'unet', 9216, 3072),
		peft('transformer.transformer_blocks.0.attn.to_v', 'unet', 3072, 3072),
		peft('transformer.transformer_blocks.0.attn.to_add_out', 'unet', 3072, 3072),
		peft('transformer.single_transformer_blocks.2.attn.to_k', 'unet', 3072, 3072),
		peft('transformer.single_transformer_blocks.2.proj_mlp', 'unet', 12_288, 3072),
		peft('transformer.single_transformer_blocks.2.proj_out', 'unet', 3072, 15_360),
		peft('transformer.proj_out', 'unet', 64, 3072),
	]);
	const {targets, unmapped} = mapModulesToBase(mods, base);
	assert.deepEqual(unmapped, []);
	assert.deepEqual(targets.get('lora_unet_double_blocks_0_img_attn_qkv'), {key: base[0]!.name, rows: null, outDim: 9216, inDim: 3072});
	assert.equal(targets.get('diffusion_model.double_blocks.0.img_attn.qkv')!.rows, null);
	assert.deepEqual(targets.get('transformer.transformer_blocks.0.attn.to_v')!.rows, [6144, 9216]);
	assert.equal(targets.get('transformer.transformer_blocks.0.attn.to_add_out')!.key, base[1]!.name);
	assert.deepEqual(targets.get('transformer.single_transformer_blocks.2.attn.to_k')!.rows, [3072, 6144]);
	assert.deepEqual(targets.get('transformer.single_transformer_blocks.2.proj_mlp')!.rows, [9216, 21_504]);
	assert.equal(targets.get('transformer.single_transformer_blocks.2.proj_out')!.key, base[3]!.name);
	assert.equal(targets.get('transformer.proj_out')!.key, base[4]!.name);
});

test('unmapped modules are reported with a reason', () => {
	const base = [{name: 'model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight', shape: [320, 320]}];
	const mods = modules([
		kohya('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q', 640, 320),
		kohya('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k', 320, 320),
	]);
	const {targets, unmapped} = mapModulesToBase(mods, base);
	assert.equal(targets.size, 0);
	assert.match(unmapped[0]!.reason, /shape 640×320 does not match/);
	assert.match(unmapped[1]!.reason, /no matching weight/);
});

test('LDM and diffusers U-Net paths convert both ways', () => {
	const pairs: Array<[string, string]> = [
		['input_blocks.1.0.in_layers.2', 'down_blocks.0.resnets.0.conv1'],
		['input_blocks.5.1.proj_out', 'down_blocks.1.attentions.1.proj_out'],
		['input_blocks.6.0.op', 'down_blocks.1.downsamplers.0.conv'],
		['input_blocks.11.0.skip_connection', 'down_blocks.3.resnets.1.conv_shortcut'],
		['middle_block.0.emb_layers.1', 'mid_block.resnets.0.time_emb_proj'],
		['middle_block.1.transformer_blocks.0.attn2.to_out.0', 'mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0'],
		['middle_block.2.out_layers.3', 'mid_block.resnets.1.conv2'],
		['output_blocks.7.1.norm', 'up_blocks.2.attentions.1.norm'],
		['output_blocks.8.0.in_layers.0', 'up_blocks.2.resnets.2.norm1'],
		['time_embed.2', 'time_embedding.linear_2'],
		['label_emb.0.0', 'add_embedding.linear_1'],
	];
	for (const [ldm, diffusers] of pairs) {
		assert.equal(ldmUnetToDiffusers(ldm), diffusers, ldm);
		assert.ok(diffusersUnetToLdm(diffusers).includes(ldm), diffusers);
	}

	assert.equal(ldmUnetToDiffusers('output_blocks.2.1.conv'), 'up_blocks.0.upsamplers.0.conv');
	assert.deepEqual(diffusersUnetToLdm('up_blocks.1.upsamplers.0.conv'), ['output_blocks.5.1.conv', 'output_blocks.5.2.conv']);
	assert.equal(ldmUnetToDiffusers('input_blocks.0.0'), 'conv_in');
	assert.equal(ldmUnetToDiffusers('input_blocks.3.1.proj_in'), null);
});
