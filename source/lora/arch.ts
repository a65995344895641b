// Base-model architecture from module names and shapes (lora-formats.md §8), and the
// architecture the metadata claims. Weights win: metadata is untrusted and sometimes wrong
// (the real ai-toolkit Flux file says sd_1.5).
import type {Arch, Component} from './types.js';
import {mostCommon} from './most-common.js';

/** What arch detection needs to know about one module. */
export type ArchProbe = {
	/** Normalised path below the component root, '_' separated (see key-styles modulePathOf). */
	path: string;
	component: Component;
	inDim: number;
	outDim: number;
};

export type ArchResult = {arch: Arch; evidence: string};

const fluxNames = /(?:^|_)(?:double_blocks|single_blocks|single_transformer_blocks)_\d+(?:_|$)/;
const sd3Names = /(?:^|_)joint_blocks_\d+_|(?:^|_)context_block_/;
const topLevelTransformer = /^transformer_blocks_\d+_/;
const crossAttentionKv = /attn2_to_[kv]$/;
const textAttention = /(?:self_attn_[qkv]_proj|self_attn_out_proj|mlp_fc1)$/;
const ldmNames = /^(?:input_blocks|middle_block|output_blocks)_/;
const deepTransformer = /(?:^|_)(?:attentions_\d+|input_blocks_\d+_1|middle_block_1|output_blocks_\d+_1)_transformer_blocks_(\d+)_/;

const crossAttentionArch: ReadonlyMap<number, Arch> = new Map([
	[768, 'sd1'],
	[1024, 'sd2'],
	[2048, 'sdxl'],
]);

/** Decide the base architecture from module names and shapes only. */
export function detectArchFromWeights(modules: readonly ArchProbe[]): ArchResult {
	const unet = modules.filter(m => m.component === 'unet');
	if (unet.some(m => fluxNames.test(m.path))) {
		return {arch: 'flux', evidence: 'Flux double/single blocks'};
	}

	if (unet.some(m => sd3Names.test(m.path))) {
		return {arch: 'sd3', evidence: 'SD3 joint blocks'};
	}

	const transformerBlocks = unet.filter(m => topLevelTransformer.test(m.path));
	if (transformerBlocks.length > 0) {
		// Diffusers DiT names are shared by Flux and SD3; the hidden width tells them apart.
		const widths = new Set(transformerBlocks.flatMap(m => [m.inDim, m.outDim]));
		if (widths.has(3072)) {
			return {arch: 'flux', evidence: 'transformer_blocks width 3072'};
		}

		if (widths.has(1536) || widths.has(2432)) {
			return {arch: 'sd3', evidence: `transformer_blocks width ${widths.has(1536) ? 1536 : 2432}`};
		}
	}

	const crossDims = unet.filter(m => crossAttentionKv.test(m.path)).map(m => m.inDim);
	const crossDim = mostCommon(crossDims);
	if (crossDim !== undefined) {
		const arch = crossAttentionArch.get(crossDim);
		if (arch) {
			return {arch, evidence: `attn2 to_k in=${crossDim}`};
		}
	}

	const components = new Set(modules.map(m => m.component));
	const teWidths = new Set(modules.filter(m => m.component !== 'unet' && textAttention.test(m.path)).map(m => m.inDim));
	if (components.has('te3') && !components.has('unet')) {
		// A T5 encoder LoRA with CLIP: SD3 pairs it with CLIP-G (te2), Flux does not.
		return components.has('te2') ? {arch: 'sd3', evidence: 'te1+te2+te3 text encoders'} : {arch: 'flux', evidence: 'CLIP-L + T5 text encoders'};
	}

	if (teWidths.has(1280)) {
		return {arch: 'sdxl', evidence: 'TE width 1280 (CLIP-G)'};
	}

	if (components.has('te1') && components.has('te2')) {
		return {arch: 'sdxl', evidence: 'te1+te2 text encoders'};
	}

	const deep = unet.some(m => Number(deepTransformer.exec(m.path)?.[1] ?? 0) >= 2);
	if (deep) {
		return {arch: 'sdxl', evidence: 'transformer_blocks index >= 2'};
	}

	if (unet.some(m => ldmNames.test(m.path)) && unet.length > 0 && !unet.some(m => /^input_blocks_(?:1|2)_1_/.test(m.path))) {
		// SGM names are kohya's SDXL spelling; SD1/SD2 kohya files use diffusers paths.
		return {arch: 'sdxl', evidence: 'SDXL LDM block names'};
	}

	if (teWidths.size === 1 && (components.has('te') || components.has('te1'))) {
		const width = [...teWidths][0];
		if (width === 768) {
			return {arch: 'sd1', evidence: 'TE width 768'};
		}

		if (width === 1024) {
			return {arch: 'sd2', evidence: 'TE width 1024'};
		}
	}

	return {arch: 'unknown', evidence: 'no architecture-specific names or shapes'};
}

export type MetadataArch = {arch: Arch; key: string};

function archFromBaseVersion(value: string): Arch {
	const v = value.trim().toLowerCase();
	if (/flux|chroma/.test(v)) {
		return 'flux';
	}

	if (/sdxl|sd_xl|stable-diffusion-xl/.test(v)) {
		return 'sdxl';
	}

	if (/^sd_?3|sd3|stable-diffusion-3/.test(v)) {
		return 'sd3';
	}

	if (/^sd_?v?2|stable-diffusion-v2|^v2/.test(v)) {
		return 'sd2';
	}

	if (/^sd_?v?1|stable-diffusion-v1|^v1|sd15/.test(v)) {
		return 'sd1';
	}

	return 'unknown';
}

/** The architecture claimed by `ss_base_model_version`, `modelspec.architecture` or `ss_v2`, if any. */
export function metadataArchOf(metadata: Readonly<Record<string, string>>): MetadataArch | null {
	for (const key of ['ss_base_model_version', 'modelspec.architecture']) {
		const value = metadata[key];
		if (typeof value === 'string' && value.trim() !== '' && value.trim() !== 'None') {
			return {arch: archFromBaseVersion(value.slice(0, 200)), key};
		}
	}

	const v2 = metadata['ss_v2'];
	if (v2 === 'True') {
		return {arch: 'sd2', key: 'ss_v2'};
	}

	return null;
}

const archNames: Record<Arch, string> = {
	sd1: 'SD1.x',
	sd2: 'SD2.x',
	sdxl: 'SDXL',
	sd3: 'SD3',
	flux: 'Flux.1',
	unknown: 'unknown',
};

/** Display name of an architecture. */
export function formatArch(arch: Arch): string {
	return archNames[arch] ?? 'unknown';
}
