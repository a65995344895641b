// Module lists of real architectures, for the sample generator. Names and shapes follow the
// trainers that write them (kohya sd-scripts networks/lora.py and lora_flux.py, LyCORIS in kohya
// naming, diffusers/PEFT for Flux), so generated files look exactly like the ones users have.

/** One adapted layer: the LoRA module name and the target layer's geometry. */
export type SampleModule = {
	/** kohya name (`lora_unet_…`) or, for PEFT, the dotted module path without `.lora_A.weight`. */
	name: string;
	out: number;
	in: number;
	/** 1 for linear and 1×1 conv, 3 for 3×3 conv. */
	kernel: number;
	/** True for Conv2d targets (1×1 or k×k), whose tensors are 4-D. */
	conv: boolean;
};

function kohyaName(prefix: string, modulePath: string): string {
	return `${prefix}.${modulePath}`.replaceAll('.', '_');
}

function linear(prefix: string, modulePath: string, out: number, inDim: number): SampleModule {
	return {name: kohyaName(prefix, modulePath), out, in: inDim, kernel: 1, conv: false};
}

function conv(prefix: string, modulePath: string, out: number, inDim: number, kernel: number): SampleModule {
	return {name: kohyaName(prefix, modulePath), out, in: inDim, kernel, conv: true};
}

/** Linear / Conv2d children of one Transformer2DModel (kohya targets every one of them). */
function transformer(modulePath: string, channels: number, context: number, depth: number, linearProjection: boolean): SampleModule[] {
	const prefix = 'lora_unet';
	const projection = (name: string) => linearProjection
		? linear(prefix, `${modulePath}.${name}`, channels, channels)
		: conv(prefix, `${modulePath}.${name}`, channels, channels, 1);
	const modules = [projection('proj_in')];
	for (let t = 0; t < depth; t++) {
		const block = `${modulePath}.transformer_blocks.${t}`;
		for (const [attention, kvIn] of [['attn1', channels], ['attn2', context]] as const) {
			modules.push(
				linear(prefix, `${block}.${attention}.to_q`, channels, channels),
				linear(prefix, `${block}.${attention}.to_k`, channels, kvIn),
				linear(prefix, `${block}.${attention}.to_v`, channels, kvIn),
				linear(prefix, `${block}.${attention}.to_out.0`, channels, channels),
			);
		}

		// GEGLU projects to 2 × 4C; the second MLP layer comes back from 4C.
		modules.push(
			linear(prefix, `${block}.ff.net.0.proj`, 8 * channels, channels),
			linear(prefix, `${block}.ff.net.2`, channels, 4 * channels),
		);
	}

	modules.push(projection('proj_out'));
	return modules;
}

/** CLIP text encoder layers (transformers' CLIPTextModel paths). */
function clip(prefix: string, layers: number, hidden: number, mlp: number): SampleModule[] {
	const modules: SampleModule[] = [];
	for (let i = 0; i < layers; i++) {
		const layer = `text_model.encoder.layers.${i}`;
		for (const projection of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
			modules.push(linear(prefix, `${layer}.self_attn.${projection}`, hidden, hidden));
		}

		modules.push(linear(prefix, `${layer}.mlp.fc1`, mlp, hidden), linear(prefix, `${layer}.mlp.fc2`, hidden, mlp));
	}

	return modules;
}

const sd15Channels = [320, 640, 1280, 1280] as const;

function resnet(modulePath: string, cin: number, cout: number, names: {conv1: string; emb: string; conv2: string; skip: string}): SampleModule[] {
	const modules = [
		conv('lora_unet', `${modulePath}.${names.conv1}`, cout, cin, 3),
		linear('lora_unet', `${modulePath}.${names.emb}`, cout, 1280),
		conv('lora_unet', `${modulePath}.${names.conv2}`, cout, cout, 3),
	];
	if (cin !== cout) {
		modules.push(conv('lora_unet', `${modulePath}.${names.skip}`, cout, cin, 1));
	}

	return modules;
}

const diffusersResnet = {conv1: 'conv1', emb: 'time_emb_proj', conv2: 'conv2', skip: 'conv_shortcut'};
const ldmResnet = {conv1: 'in_layers.2', emb: 'emb_layers.1', conv2: 'out_layers.3', skip: 'skip_connection'};

/**
 * SD1.x as kohya names it (diffusers module paths): 16 Transformer2DModels with 1×1-conv
 * projections, plus ResnetBlock2D / Down- / Upsample2D children with `conv` (LoCon), plus the
 * 12-layer CLIP ViT-L text encoder under `lora_te`.
 */
export function sd15Modules(options: {conv?: boolean; textEncoder?: boolean} = {}): SampleModule[] {
	const modules: SampleModule[] = [];
	for (let i = 0; i < 3; i++) {
		for (let j = 0; j < 2; j++) {
			modules.push(...transformer(`down_blocks.${i}.attentions.${j}`, sd15Channels[i]!, 768, 1, false));
		}
	}

	modules.push(...transformer('mid_block.attentions.0', 1280, 768, 1, false));
	const reversed = [...sd15Channels].reverse();
	for (let i = 1; i < 4; i++) {
		for (let j = 0; j < 3; j++) {
			modules.push(...transformer(`up_blocks.${i}.attentions.${j}`, reversed[i]!, 768, 1, false));
		}
	}

	if (options.conv) {
		let cin = 320;
		for (let i = 0; i < 4; i++) {
			const channels = sd15Channels[i]!;
			for (let j = 0; j < 2; j++) {
				modules.push(...resnet(`down_blocks.${i}.resnets.${j}`, j === 0 ? cin : channels, channels, diffusersResnet));
			}

			cin = channels;
			if (i < 3) {
				modules.push(conv('lora_unet', `down_blocks.${i}.downsamplers.0.conv`, channels, channels, 3));
			}
		}

		modules.push(
			...resnet('mid_block.resnets.0', 1280, 1280, diffusersResnet),
			...resnet('mid_block.resnets.1', 1280, 1280, diffusersResnet),
		);
		let previous = 1280;
		for (let i = 0; i < 4; i++) {
			const outChannels = reversed[i]!;
			const inChannels = reversed[Math.min(i + 1, 3)]!;
			for (let j = 0; j < 3; j++) {
				const skip = j === 2 ? inChannels : outChannels;
				const resnetIn = j === 0 ? previous : outChannels;
				modules.push(...resnet(`up_blocks.${i}.resnets.${j}`, resnetIn + skip, outChannels, diffusersResnet));
			}

			previous = outChannels;
			if (i < 3) {
				modules.push(conv('lora_unet', `up_blocks.${i}.upsamplers.0.conv`, outChannels, outChannels, 3));
			}
		}
	}

	if (options.textEncoder ?? true) {
		modules.push(...clip('lora_te', 12, 768, 3072));
	}

	return modules;
}

/**
 * SDXL as kohya names it (SGM paths from sdxl_original_unet.py): transformers of depth 2 (640 ch)
 * and 10 (1280 ch) with linear projections, context 2048; TE1 = CLIP ViT-L (12 × 768),
 * TE2 = OpenCLIP ViT-bigG in transformers layout (32 × 1280).
 */
export function sdxlModules(options: {conv?: boolean; textEncoder?: boolean} = {}): SampleModule[] {
	const modules: SampleModule[] = [];
	const blocks: Array<[string, number, number]> = [
		['input_blocks.4.1', 640, 2], ['input_blocks.5.1', 640, 2],
		['input_blocks.7.1', 1280, 10], ['input_blocks.8.1', 1280, 10],
		['middle_block.1', 1280, 10],
		['output_blocks.0.1', 1280, 10], ['output_blocks.1.1', 1280, 10], ['output_blocks.2.1', 1280, 10],
		['output_blocks.3.1', 640, 2], ['output_blocks.4.1', 640, 2], ['output_blocks.5.1', 640, 2],
	];
	for (const [modulePath, channels, depth] of blocks) {
		modules.push(...transformer(modulePath, channels, 2048, depth, true));
	}

	if (options.conv) {
		const resnets: Array<[string, number, number]> = [
			['input_blocks.1.0', 320, 320], ['input_blocks.2.0', 320, 320],
			['input_blocks.4.0', 320, 640], ['input_blocks.5.0', 640, 640],
			['input_blocks.7.0', 640, 1280], ['input_blocks.8.0', 1280, 1280],
			['middle_block.0', 1280, 1280], ['middle_block.2', 1280, 1280],
			['output_blocks.0.0', 2560, 1280], ['output_blocks.1.0', 2560, 1280], ['output_blocks.2.0', 1920, 1280],
			['output_blocks.3.0', 1920, 640], ['output_blocks.4.0', 1280, 640], ['output_blocks.5.0', 960, 640],
			['output_blocks.6.0', 960, 320], ['output_blocks.7.0', 640, 320], ['output_blocks.8.0', 640, 320],
		];
		for (const [modulePath, cin, cout] of resnets) {
			modules.push(...resnet(modulePath, cin, cout, ldmResnet));
		}

		for (const [modulePath, channels] of [['input_blocks.3.0.op', 320], ['input_blocks.6.0.op', 640], ['output_blocks.2.2.conv', 1280], ['output_blocks.5.2.conv', 640]] as const) {
			modules.push(conv('lora_unet', modulePath, channels, channels, 3));
		}
	}

	if (options.textEncoder ?? true) {
		modules.push(...clip('lora_te1', 12, 768, 3072), ...clip('lora_te2', 32, 1280, 5120));
	}

	return modules;
}

const fluxHidden = 3072;

/**
 * Flux.1 as kohya's lora_flux.py names it: 19 double blocks (image and text streams) and
 * 38 single blocks, every Linear inside them.
 */
export function fluxKohyaModules(): SampleModule[] {
	const modules: SampleModule[] = [];
	const h = fluxHidden;
	for (let i = 0; i < 19; i++) {
		for (const stream of ['img', 'txt']) {
			const block = `double_blocks.${i}.${stream}`;
			modules.push(
				linear('lora_unet', `${block}_attn.qkv`, 3 * h, h),
				linear('lora_unet', `${block}_attn.proj`, h, h),
				linear('lora_unet', `${block}_mlp.0`, 4 * h, h),
				linear('lora_unet', `${block}_mlp.2`, h, 4 * h),
				linear('lora_unet', `${block}_mod.lin`, 6 * h, h),
			);
		}
	}

	for (let i = 0; i < 38; i++) {
		const block = `single_blocks.${i}`;
		modules.push(
			linear('lora_unet', `${block}.linear1`, (3 * h) + (4 * h), h),
			linear('lora_unet', `${block}.linear2`, h, h + (4 * h)),
			linear('lora_unet', `${block}.modulation.lin`, 3 * h, h),
		);
	}

	return modules;
}

/**
 * Flux.1 in diffusers/PEFT naming with the attention projections diffusers' Flux trainer
 * targets by default (`to_q,to_k,to_v,to_out.0`; single blocks have no to_out).
 */
export function fluxPeftModules(): SampleModule[] {
	const modules: SampleModule[] = [];
	const h = fluxHidden;
	const peft = (modulePath: string, out: number, inDim: number): SampleModule => ({name: `transformer.${modulePath}`, out, in: inDim, kernel: 1, conv: false});
	for (let i = 0; i < 19; i++) {
		for (const projection of ['to_q', 'to_k', 'to_v', 'to_out.0']) {
			modules.push(peft(`transformer_blocks.${i}.attn.${projection}`, h, h));
		}
	}

	for (let i = 0; i < 38; i++) {
		for (const projection of ['to_q', 'to_k', 'to_v']) {
			modules.push(peft(`single_transformer_blocks.${i}.attn.${projection}`, h, h));
		}
	}

	return modules;
}
