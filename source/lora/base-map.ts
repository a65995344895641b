// Pair each LoRA module with the base checkpoint weight it modifies, for the elias-style
// spn_ckpt / fro_ckpt scores. Works from the base side, as elias-gaeros does: every weight key of
// the checkpoint is turned into the module paths a LoRA may use for it (kohya underscore form,
// below the component root), then LoRA modules are looked up by (component, path) and checked
// against the weight's shape.
//
// Base layouts understood (lora-formats.md §2, §3, §7, §8):
//   - SD1/SD2/SDXL single-file (LDM/SGM): `model.diffusion_model.*` (registered under both the
//     LDM path, which SDXL kohya files use, and the diffusers path, which SD1/SD2 kohya files and
//     diffusers/PEFT files use), `cond_stage_model.transformer.[text_model.]*` (SD1 CLIP),
//     `cond_stage_model.model.transformer.resblocks.*` (SD2 OpenCLIP), `conditioner.embedders.0.
//     transformer.*` (SDXL CLIP-L) and `conditioner.embedders.1.model.*` (SDXL OpenCLIP-G);
//     OpenCLIP's fused `attn.in_proj_weight` is split into row thirds in OpenCLIP's order q, k, v
//     (elias-gaeros splits it k, q, v, so its TE2 q and k swap base norms);
//   - diffusers component files: U-Net `down_blocks.*` (plus LDM paths for SDXL kohya files),
//     HF CLIP `text_model.*`, T5 `encoder.block.*`, Flux `transformer_blocks.*`;
//   - Flux BFL names `double_blocks.*`, `single_blocks.*` (also under `model.diffusion_model.`):
//     fused qkv / linear1 map whole to kohya and ai-toolkit modules, and as row slices
//     (to_q/to_k/to_v/proj_mlp) to diffusers-named modules;
//   - ComfyUI all-in-one `text_encoders.{clip_l,clip_g,t5xxl}.transformer.*`.
// The VAE is skipped. Anything else is reported as unmapped with a reason.
import {modulePathOf, parseTensorKey} from './key-styles.js';
import type {Component, LoraModule} from './types.js';

/** Which text encoder or denoiser a weight belongs to; LoRA `te` and `te1` are the same slot. */
export type BaseGroup = 'unet' | 'te1' | 'te2' | 'te3';

export type BaseSlice = {
	/** Tensor key in the checkpoint. */
	key: string;
	/** Row range of a fused weight (qkv), or null for the whole tensor. */
	rows: [number, number] | null;
	/** Rows and flattened columns of the (sliced) weight. */
	outDim: number;
	inDim: number;
	/**
	 * Stored as x·P (OpenCLIP's `text_projection`): the module's weight W is this tensor's
	 * transpose. Norms do not care; uᵢᵀ·W·vᵢ does.
	 */
	transposed?: boolean;
};

export type BaseMapModule = {
	name: string;
	component: Component;
	/** Module path below the component root, '.' → '_' (key-styles' modulePathOf). */
	path: string;
	outDim: number;
	inDim: number;
};

export type BaseMapping = {
	targets: Map<string, BaseSlice>;
	unmapped: Array<{name: string; reason: string}>;
};

type Candidate = {group: BaseGroup; path: string; rows: [number, number] | null; transposeOk?: boolean};

type BaseTensor = {name: string; shape: readonly number[]};

export function groupOfComponent(component: Component): BaseGroup {
	switch (component) {
		case 'te':
		case 'te1': {
			return 'te1';
		}

		case 'te2': {
			return 'te2';
		}

		case 'te3': {
			return 'te3';
		}

		default: {
			return 'unet';
		}
	}
}

const resnetPartsLdmToDiffusers: ReadonlyArray<[string, string]> = [
	['in_layers.0', 'norm1'],
	['in_layers.2', 'conv1'],
	['emb_layers.1', 'time_emb_proj'],
	['out_layers.0', 'norm2'],
	['out_layers.3', 'conv2'],
	['skip_connection', 'conv_shortcut'],
];

function resnetPartToDiffusers(part: string): string | null {
	for (const [ldm, diffusers] of resnetPartsLdmToDiffusers) {
		if (part === ldm) {
			return diffusers;
		}
	}

	return null;
}

function resnetPartToLdm(part: string): string | null {
	for (const [ldm, diffusers] of resnetPartsLdmToDiffusers) {
		if (part === diffusers) {
			return ldm;
		}
	}

	return null;
}

const unetGlobalsLdmToDiffusers: ReadonlyArray<[string, string]> = [
	['input_blocks.0.0', 'conv_in'],
	['time_embed.0', 'time_embedding.linear_1'],
	['time_embed.2', 'time_embedding.linear_2'],
	['label_emb.0.0', 'add_embedding.linear_1'],
	['label_emb.0.2', 'add_embedding.linear_2'],
	['out.0', 'conv_norm_out'],
	['out.2', 'conv_out'],
];

/** An LDM U-Net module path (dotted, no `.weight`) in diffusers naming; null when it has none. */
export function ldmUnetToDiffusers(path: string): string | null {
	for (const [ldm, diffusers] of unetGlobalsLdmToDiffusers) {
		if (path === ldm) {
			return diffusers;
		}
	}

	let match = /^input_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(path);
	if (match) {
		const n = Number(match[1]);
		if (n < 1) {
			return null;
		}

		const i = Math.floor((n - 1) / 3);
		const j = (n - 1) % 3;
		const rest = match[3]!;
		if (j === 2) {
			return match[2] === '0' && rest === 'op' ? `down_blocks.${i}.downsamplers.0.conv` : null;
		}

		if (match[2] === '0') {
			const part = resnetPartToDiffusers(rest);
			return part ? `down_blocks.${i}.resnets.${j}.${part}` : null;
		}

		return match[2] === '1' ? `down_blocks.${i}.attentions.${j}.${rest}` : null;
	}

	match = /^middle_block\.(\d+)\.(.+)$/.exec(path);
	if (match) {
		const rest = match[2]!;
		if (match[1] === '1') {
			return `mid_block.attentions.0.${rest}`;
		}

		const part = resnetPartToDiffusers(rest);
		return part && (match[1] === '0' || match[1] === '2') ? `mid_block.resnets.${Number(match[1]) / 2}.${part}` : null;
	}

	match = /^output_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(path);
	if (match) {
		const n = Number(match[1]);
		const i = Math.floor(n / 3);
		const j = n % 3;
		const rest = match[3]!;
		if (rest === 'conv' && (match[2] === '1' || match[2] === '2')) {
			return `up_blocks.${i}.upsamplers.0.conv`;
		}

		if (match[2] === '0') {
			const part = resnetPartToDiffusers(rest);
			return part ? `up_blocks.${i}.resnets.${j}.${part}` : null;
		}

		return match[2] === '1' ? `up_blocks.${i}.attentions.${j}.${rest}` : null;
	}

	return null;
}

/** A diffusers U-Net module path in LDM naming (both upsampler slots, the arch decides which exists). */
export function diffusersUnetToLdm(path: string): string[] {
	for (const [ldm, diffusers] of unetGlobalsLdmToDiffusers) {
		if (path === diffusers) {
			return [ldm];
		}
	}

	let match = /^down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(path);
	if (match) {
		const n = (3 * Number(match[1])) + Number(match[3]) + 1;
		if (match[2] === 'attentions') {
			return [`input_blocks.${n}.1.${match[4]!}`];
		}

		const part = resnetPartToLdm(match[4]!);
		return part ? [`input_blocks.${n}.0.${part}`] : [];
	}

	match = /^down_blocks\.(\d+)\.downsamplers\.0\.conv$/.exec(path);
	if (match) {
		return [`input_blocks.${(3 * Number(match[1])) + 3}.0.op`];
	}

	match = /^mid_block\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(path);
	if (match) {
		if (match[1] === 'attentions') {
			return [`middle_block.1.${match[3]!}`];
		}

		const part = resnetPartToLdm(match[3]!);
		return part ? [`middle_block.${2 * Number(match[2])}.${part}`] : [];
	}

	match = /^up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(path);
	if (match) {
		const n = (3 * Number(match[1])) + Number(match[3]);
		if (match[2] === 'attentions') {
			return [`output_blocks.${n}.1.${match[4]!}`];
		}

		const part = resnetPartToLdm(match[4]!);
		return part ? [`output_blocks.${n}.0.${part}`] : [];
	}

	match = /^up_blocks\.(\d+)\.upsamplers\.0\.conv$/.exec(path);
	if (match) {
		const n = (3 * Number(match[1])) + 2;
		return [`output_blocks.${n}.1.conv`, `output_blocks.${n}.2.conv`];
	}

	return [];
}

/** OpenCLIP text-tower paths (below `model.`) in HF CLIP naming; fused in_proj split q, k, v. */
function openClipCandidates(path: string, rowsTotal: number, group: BaseGroup): Candidate[] {
	let match = /^transformer\.resblocks\.(\d+)\.attn\.in_proj_weight$/.exec(path);
	if (match) {
		const third = rowsTotal / 3;
		if (!Number.isInteger(third)) {
			return [];
		}

		// OpenCLIP's nn.MultiheadAttention stacks the projections as q, k, v.
		return (['q', 'k', 'v'] as const).map((part, index) => ({
			group,
			path: `text_model.encoder.layers.${match![1]!}.self_attn.${part}_proj`,
			rows: [index * third, (index + 1) * third] as [number, number],
		}));
	}

	match = /^transformer\.resblocks\.(\d+)\.(attn\.out_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/.exec(path);
	if (match) {
		const part = {['attn.out_proj']: 'self_attn.out_proj', ['mlp.c_fc']: 'mlp.fc1', ['mlp.c_proj']: 'mlp.fc2'}[match[2]!]!;
		return [{group, path: `text_model.encoder.layers.${match[1]!}.${part}`, rows: null}];
	}

	if (path === 'text_projection') {
		return [{group, path: 'text_projection', rows: null, transposeOk: true}];
	}

	return [];
}

const fluxGlobals: ReadonlyArray<[string, string]> = [
	['img_in', 'x_embedder'],
	['txt_in', 'context_embedder'],
	['time_in.in_layer', 'time_text_embed.timestep_embedder.linear_1'],
	['time_in.out_layer', 'time_text_embed.timestep_embedder.linear_2'],
	['vector_in.in_layer', 'time_text_embed.text_embedder.linear_1'],
	['vector_in.out_layer', 'time_text_embed.text_embedder.linear_2'],
	['guidance_in.in_layer', 'time_text_embed.guidance_embedder.linear_1'],
	['guidance_in.out_layer', 'time_text_embed.guidance_embedder.linear_2'],
	['final_layer.linear', 'proj_out'],
	['final_layer.adaLN_modulation.1', 'norm_out.linear'],
];

const fluxDoubleParts: ReadonlyArray<[string, string]> = [
	['img_attn.proj', 'attn.to_out.0'],
	['txt_attn.proj', 'attn.to_add_out'],
	['img_mlp.0', 'ff.net.0.proj'],
	['img_mlp.2', 'ff.net.2'],
	['txt_mlp.0', 'ff_context.net.0.proj'],
	['txt_mlp.2', 'ff_context.net.2'],
	['img_mod.lin', 'norm1.linear'],
	['txt_mod.lin', 'norm1_context.linear'],
];

/** Flux BFL module path → itself plus its diffusers names (row slices of the fused weights). */
function fluxCandidates(path: string, rowsTotal: number): Candidate[] {
	const out: Candidate[] = [{group: 'unet', path, rows: null}];
	for (const [bfl, diffusers] of fluxGlobals) {
		if (path === bfl) {
			out.push({group: 'unet', path: diffusers, rows: null});
		}
	}

	let match = /^double_blocks\.(\d+)\.(img|txt)_attn\.qkv$/.exec(path);
	if (match) {
		const third = rowsTotal / 3;
		const names = match[2] === 'img' ? ['to_q', 'to_k', 'to_v'] : ['add_q_proj', 'add_k_proj', 'add_v_proj'];
		if (Number.isInteger(third)) {
			for (const [index, name] of names.entries()) {
				out.push({group: 'unet', path: `transformer_blocks.${match[1]!}.attn.${name}`, rows: [index * third, (index + 1) * third]});
			}
		}

		return out;
	}

	match = /^double_blocks\.(\d+)\.(.+)$/.exec(path);
	if (match) {
		for (const [bfl, diffusers] of fluxDoubleParts) {
			if (match[2] === bfl) {
				out.push({group: 'unet', path: `transformer_blocks.${match[1]!}.${diffusers}`, rows: null});
			}
		}

		return out;
	}

	match = /^single_blocks\.(\d+)\.(linear1|linear2|modulation\.lin)$/.exec(path);
	if (match) {
		const block = `single_transformer_blocks.${match[1]!}`;
		if (match[2] === 'linear1') {
			// Rows: q, k, v (hidden each), then the MLP (4·hidden): 7·hidden in all.
			const hidden = rowsTotal / 7;
			if (Number.isInteger(hidden)) {
				for (const [index, name] of ['attn.to_q', 'attn.to_k', 'attn.to_v'].entries()) {
					out.push({group: 'unet', path: `${block}.${name}`, rows: [index * hidden, (index + 1) * hidden]});
				}

				out.push({group: 'unet', path: `${block}.proj_mlp`, rows: [3 * hidden, rowsTotal]});
			}
		} else {
			out.push({group: 'unet', path: `${block}.${match[2] === 'linear2' ? 'proj_out' : 'norm.linear'}`, rows: null});
		}
	}

	return out;
}

const isFluxPath = /^(?:double_blocks|single_blocks|img_in|txt_in|time_in|vector_in|guidance_in|final_layer)\b/;
const isDiffusersUnetPath = /^(?:down_blocks|up_blocks|mid_block|conv_in|conv_out|conv_norm_out|time_embedding|add_embedding)\b/;
const isLdmUnetPath = /^(?:input_blocks|middle_block|output_blocks|time_embed|label_emb|out)\./;

function unetCandidates(path: string, rowsTotal: number): Candidate[] {
	if (isFluxPath.test(path)) {
		return fluxCandidates(path, rowsTotal);
	}

	if (isLdmUnetPath.test(path)) {
		const out: Candidate[] = [{group: 'unet', path, rows: null}];
		const diffusers = ldmUnetToDiffusers(path);
		if (diffusers) {
			out.push({group: 'unet', path: diffusers, rows: null});
		}

		return out;
	}

	if (isDiffusersUnetPath.test(path)) {
		return [{group: 'unet', path, rows: null}, ...diffusersUnetToLdm(path).map(p => ({group: 'unet' as const, path: p, rows: null}))];
	}

	// SD3/MMDiT, diffusers Flux transformer and others: the path as it stands.
	return [{group: 'unet', path, rows: null}];
}

function stripWeight(key: string): string | null {
	return key.endsWith('.weight') ? key.slice(0, -'.weight'.length) : null;
}

/** Module paths (dotted) a base weight key can be the target of. Empty for keys no LoRA targets. */
export function baseKeyCandidates(key: string, shape: readonly number[]): Candidate[] {
	if (shape.length < 2 || key.startsWith('first_stage_model.') || key.startsWith('vae.')) {
		return [];
	}

	const rowsTotal = shape[0]!;
	const prefixes: ReadonlyArray<[string, (rest: string) => Candidate[]]> = [
		['model.diffusion_model.', rest => {
			const path = stripWeight(rest);
			return path ? unetCandidates(path, rowsTotal) : [];
		}],
		['cond_stage_model.transformer.', rest => {
			const path = stripWeight(rest);
			if (!path) {
				return [];
			}

			return [{group: 'te1', path: path.startsWith('text_model.') ? path : `text_model.${path}`, rows: null}];
		}],
		['cond_stage_model.model.', rest => openClipCandidates(rest, rowsTotal, 'te1')],
		['conditioner.embedders.0.transformer.', rest => {
			const path = stripWeight(rest);
			return path ? [{group: 'te1', path, rows: null}] : [];
		}],
		['conditioner.embedders.1.model.', rest => openClipCandidates(rest, rowsTotal, 'te2')],
		['text_encoders.clip_l.transformer.', rest => {
			const path = stripWeight(rest);
			return path ? [{group: 'te1', path, rows: null}] : [];
		}],
		['text_encoders.clip_g.transformer.', rest => {
			const path = stripWeight(rest);
			return path ? [{group: 'te2', path, rows: null}] : [];
		}],
		['text_encoders.t5xxl.transformer.', rest => {
			const path = stripWeight(rest);
			return path ? [{group: 'te3', path, rows: null}, {group: 'te2', path, rows: null}] : [];
		}],
	];
	for (const [prefix, build] of prefixes) {
		if (key.startsWith(prefix)) {
			return build(key.slice(prefix.length));
		}
	}

	const path = stripWeight(key);
	if (!path) {
		return [];
	}

	// Component files without a prefix: HF CLIP (either text encoder; shapes decide), T5, a U-Net or a transformer.
	if (path.startsWith('text_model.')) {
		return [{group: 'te1', path, rows: null}, {group: 'te2', path, rows: null}];
	}

	if (path.startsWith('encoder.block.')) {
		return [{group: 'te3', path, rows: null}, {group: 'te2', path, rows: null}];
	}

	return unetCandidates(path, rowsTotal);
}

function underscore(path: string): string {
	return path.replaceAll('.', '_');
}

function flatColumns(shape: readonly number[]): number {
	let product = 1;
	for (const d of shape.slice(1)) {
		product *= d;
	}

	return product;
}

/** Pair LoRA modules with base weights. Pure: needs only the base tensor names and shapes. */
export function mapModulesToBase(modules: readonly BaseMapModule[], baseTensors: Iterable<BaseTensor>): BaseMapping {
	const index = new Map<string, BaseSlice[]>();
	const transposable = new Set<string>();
	for (const tensor of baseTensors) {
		for (const candidate of baseKeyCandidates(tensor.name, tensor.shape)) {
			const id = `${candidate.group}:${underscore(candidate.path)}`;
			const rows = candidate.rows;
			const slice: BaseSlice = {
				key: tensor.name,
				rows,
				outDim: rows ? rows[1] - rows[0] : tensor.shape[0]!,
				inDim: flatColumns(tensor.shape),
				...(candidate.transposeOk ? {transposed: true} : {}),
			};
			const list = index.get(id) ?? [];
			list.push(slice);
			index.set(id, list);
			if (candidate.transposeOk) {
				transposable.add(id);
			}
		}
	}

	const targets = new Map<string, BaseSlice>();
	const unmapped: Array<{name: string; reason: string}> = [];
	for (const module of modules) {
		const id = `${groupOfComponent(module.component)}:${module.path}`;
		const found = index.get(id);
		if (!found) {
			unmapped.push({name: module.name, reason: 'no matching weight in the base checkpoint'});
			continue;
		}

		const match = found.find(s => (s.outDim === module.outDim && s.inDim === module.inDim)
			|| (transposable.has(id) && s.outDim === module.inDim && s.inDim === module.outDim));
		if (match) {
			targets.set(module.name, match);
		} else {
			const first = found[0]!;
			unmapped.push({name: module.name, reason: `shape ${module.outDim}×${module.inDim} does not match ${first.key} (${first.outDim}×${first.inDim})`});
		}
	}

	return {targets, unmapped};
}

/** The modules of a parsed LoRA as base-map input (factor modules only: what a recipe scores). */
export function baseMapModulesOf(modules: ReadonlyArray<Pick<LoraModule, 'name' | 'component' | 'tensors' | 'outDim' | 'inDim'>>): BaseMapModule[] {
	const out: BaseMapModule[] = [];
	for (const module of modules) {
		const key = module.tensors['down'] ?? Object.values(module.tensors)[0];
		const parsed = key === undefined ? null : parseTensorKey(key);
		const dialect = parsed?.kind === 'part' ? parsed.dialect : null;
		const {path} = modulePathOf(module.name, dialect);
		out.push({name: module.name, component: module.component, path, outDim: module.outDim, inDim: module.inDim});
	}

	return out;
}
