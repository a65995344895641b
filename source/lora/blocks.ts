// Block ids for charts and per-block sums (lora-formats.md §7).
//
// U-Net models use the sd-webui-lora-block-weight names: SD1/SD2 IN01..IN11, M00, OUT00..OUT11
// (kohya's 25-block index; IN00 = conv_in never carries LoRA), SDXL IN00..IN08, M00, OUT00..OUT08.
// Flux: IN (img_in/txt_in/time_in/vector_in/guidance_in), D00..D18, S00..S37, OUT (final_layer).
// SD3: IN (embedders), J00..J{n-1}, OUT. Anything unplaceable is '?'.
//
// Text encoders get one block per encoder component, named after the component: SD1/SD2 have a
// single `TE` (kohya `lora_te_`, and `lora_te1_` written by diffusers' converter); SDXL has TE1
// (CLIP-L) and TE2 (CLIP-G); SD3 TE1 (CLIP-L), TE2 (CLIP-G), TE3 (T5); Flux TE1 (CLIP-L) and TE3
// (T5, kohya's `lora_te3_`). Per-layer TE blocks were rejected: 12-32 extra bars per encoder
// would drown the U-Net in a chart, and the per-module view already shows layers.
import type {Arch, Component, LoraModel} from './types.js';

function pad(n: number): string {
	return String(n).padStart(2, '0');
}

function range(prefix: string, count: number): string[] {
	return Array.from({length: count}, (_, i) => `${prefix}${pad(i)}`);
}

const teBlocks: Record<Arch, string[]> = {
	sd1: ['TE'],
	sd2: ['TE'],
	sdxl: ['TE1', 'TE2'],
	sd3: ['TE1', 'TE2', 'TE3'],
	flux: ['TE1', 'TE3'],
	unknown: [],
};

/** Number of SD3 joint blocks: from the file (max index + 1), rounded up to a known model size. */
function sd3BlockCount(model?: LoraModel): number {
	let max = -1;
	for (const module of model?.modules ?? []) {
		const match = /^J(\d+)$/.exec(module.block);
		if (match) {
			max = Math.max(max, Number(match[1]));
		}
	}

	if (max < 24) {
		return 24;
	}

	return max < 38 ? 38 : max + 1;
}

function unetBlocks(arch: Arch, model?: LoraModel): string[] {
	switch (arch) {
		case 'sd1':
		case 'sd2': {
			return [...range('IN', 12).slice(1), 'M00', ...range('OUT', 12)];
		}

		case 'sdxl': {
			return [...range('IN', 9), 'M00', ...range('OUT', 9)];
		}

		case 'flux': {
			return ['IN', ...range('D', 19), ...range('S', 38), 'OUT'];
		}

		case 'sd3': {
			const present = new Set(model?.modules.map(m => m.block));
			return [...(present.has('IN') ? ['IN'] : []), ...range('J', sd3BlockCount(model)), ...(present.has('OUT') ? ['OUT'] : [])];
		}

		default: {
			return [];
		}
	}
}

/**
 * Every block id of an architecture in display order (empty blocks included), followed by any
 * other block the model's modules use ('?' last).
 */
export function blockNamesFor(arch: Arch, model?: LoraModel): string[] {
	const names = [...unetBlocks(arch, model), ...teBlocks[arch]];
	const known = new Set(names);
	const extra = new Set<string>();
	for (const module of model?.modules ?? []) {
		if (!known.has(module.block)) {
			extra.add(module.block);
		}
	}

	return [...names, ...[...extra].sort((a, b) => blockOrderOf(a) - blockOrderOf(b) || a.localeCompare(b))];
}

/** Sort key consistent with blockNamesFor for every architecture: input side, middle, output, TE, '?'. */
export function blockOrderOf(block: string): number {
	if (block === 'IN') {
		return 0;
	}

	if (block === 'OUT') {
		return 900;
	}

	if (block === 'TE') {
		return 1000;
	}

	if (block === '?') {
		return 9000;
	}

	const match = /^(IN|M|D|S|J|OUT|TE)(\d{1,3})$/.exec(block);
	if (!match) {
		return 8000;
	}

	const n = Number(match[2]);
	switch (match[1]) {
		case 'IN': {
			return 1 + Math.min(n, 98);
		}

		case 'M': {
			return 100 + Math.min(n, 99);
		}

		case 'D': {
			return 200 + Math.min(n, 99);
		}

		case 'S': {
			return 300 + Math.min(n, 99);
		}

		case 'J': {
			return 400 + Math.min(n, 99);
		}

		case 'OUT': {
			return 500 + Math.min(n, 99);
		}

		default: {
			return 1000 + Math.min(n, 9);
		}
	}
}

const flux = {
	double: /(?:^|_)(?:double_blocks|transformer_blocks)_(\d+)(?:_|$)/,
	single: /(?:^|_)(?:single_blocks|single_transformer_blocks)_(\d+)(?:_|$)/,
	input: /^(?:img_in|txt_in|time_in|vector_in|guidance_in|x_embedder|context_embedder|time_text_embed)(?:_|$)/,
	output: /^(?:final_layer|norm_out|proj_out)(?:_|$)/,
};

const sd3 = {
	joint: /(?:^|_)(?:joint_blocks|transformer_blocks)_(\d+)(?:_|$)/,
	input: /^(?:pos_embed|x_embedder|context_embedder|time_text_embed|t_embedder|y_embedder)(?:_|$)/,
	output: /^(?:final_layer|norm_out|proj_out)(?:_|$)/,
};

const ldm = {
	input: /^input_blocks_(\d+)_/,
	middle: /^middle_block_/,
	output: /^output_blocks_(\d+)_/,
};

const diffusersUnet = {
	down: /^down_blocks_(\d+)_(attentions|resnets|downsamplers)_(\d+)(?:_|$)/,
	up: /^up_blocks_(\d+)_(attentions|resnets|upsamplers)_(\d+)(?:_|$)/,
	middle: /^mid_block_/,
};

/** Block of an SD-family U-Net path (LDM or diffusers names; the k-formula holds for SD1, SD2 and SDXL). */
function unetBlockOf(path: string): string {
	let match = ldm.input.exec(path);
	if (match) {
		return `IN${pad(Number(match[1]))}`;
	}

	if (ldm.middle.test(path) || diffusersUnet.middle.test(path)) {
		return 'M00';
	}

	match = ldm.output.exec(path);
	if (match) {
		return `OUT${pad(Number(match[1]))}`;
	}

	match = diffusersUnet.down.exec(path);
	if (match) {
		const i = Number(match[1]);
		return `IN${pad(match[2] === 'downsamplers' ? 3 + (3 * i) : 1 + (3 * i) + Number(match[3]))}`;
	}

	match = diffusersUnet.up.exec(path);
	if (match) {
		const i = Number(match[1]);
		return `OUT${pad(match[2] === 'upsamplers' ? (3 * i) + 2 : (3 * i) + Number(match[3]))}`;
	}

	return '?';
}

function fluxBlockOf(path: string): string {
	let match = flux.single.exec(path);
	if (match) {
		return `S${pad(Number(match[1]))}`;
	}

	match = flux.double.exec(path);
	if (match) {
		return `D${pad(Number(match[1]))}`;
	}

	if (flux.input.test(path)) {
		return 'IN';
	}

	return flux.output.test(path) ? 'OUT' : '?';
}

function sd3BlockOf(path: string): string {
	const match = sd3.joint.exec(path);
	if (match) {
		return `J${pad(Number(match[1]))}`;
	}

	if (sd3.input.test(path)) {
		return 'IN';
	}

	return sd3.output.test(path) ? 'OUT' : '?';
}

/** Text-encoder block for a component under an architecture (see the scheme at the top). */
export function teBlockOf(component: Component, arch: Arch): string {
	if (arch === 'sd1' || arch === 'sd2') {
		return 'TE';
	}

	return component.toUpperCase();
}

/** Block id of one module, from its component, normalised path and the file's architecture. */
export function blockOf(path: string, component: Component, arch: Arch): string {
	if (component !== 'unet') {
		return teBlockOf(component, arch);
	}

	switch (arch) {
		case 'flux': {
			return fluxBlockOf(path);
		}

		case 'sd3': {
			return sd3BlockOf(path);
		}

		case 'sd1':
		case 'sd2':
		case 'sdxl': {
			return unetBlockOf(path);
		}

		default: {
			// Unknown base: only names that cannot mean anything else.
			if (/(?:^|_)(?:double_blocks|single_blocks|single_transformer_blocks)_\d+/.test(path)) {
				return fluxBlockOf(path);
			}

			if (/(?:^|_)joint_blocks_\d+/.test(path)) {
				return sd3BlockOf(path);
			}

			return unetBlockOf(path);
		}
	}
}
