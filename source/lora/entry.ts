// One row of a file list: what the header alone says about a file. Never throws; a file that
// cannot be read carries a one-line `error` instead, so one bad file never hides the others.
import {stat} from 'node:fs/promises';
import {parseTraining, type TrainingInfo} from './metadata.js';
import {buildLoraModel, loadLoraModel} from './model.js';
import {errorReason, readHeader, TensorReader} from './safetensors.js';
import type {LoraModel, SafetensorsHeader} from './types.js';

export type LoraEntry = {
	path: string;
	sizeBytes: number;
	mtimeMs: number;
	/** One-line reason the file could not be read (never file content), null when it was. */
	error: string | null;
	header?: SafetensorsHeader;
	model?: LoraModel;
	training?: TrainingInfo;
	/** True when `model` carries the values of the alpha tensors (exact alpha and scale). */
	alphasLoaded?: boolean;
};

export type EntryOptions = {
	/**
	 * Also read the 0-d alpha tensors (a few hundred tiny reads) so alpha and scale are exact.
	 * Off by default: a file list should touch headers only.
	 */
	alphas?: boolean;
};

/** Header, model and parsed training metadata of one file. Never throws. */
export async function loadEntry(filePath: string, options: EntryOptions = {}): Promise<LoraEntry> {
	let sizeBytes = 0;
	let mtimeMs = 0;
	try {
		const info = await stat(filePath);
		sizeBytes = info.size;
		mtimeMs = info.mtimeMs;
	} catch {
		// readHeader reports the reason below.
	}

	let header: SafetensorsHeader;
	try {
		header = await readHeader(filePath);
	} catch (error) {
		return {path: filePath, sizeBytes, mtimeMs, error: oneLine(errorReason(error))};
	}

	const entry: LoraEntry = {path: filePath, sizeBytes: header.sizeBytes, mtimeMs: header.mtimeMs, error: null, header};
	try {
		if (options.alphas) {
			const reader = await TensorReader.open(header);
			try {
				entry.model = await loadLoraModel(header, async name => reader.read(name));
				entry.alphasLoaded = true;
			} finally {
				await reader.close();
			}
		} else {
			entry.model = buildLoraModel(header);
			entry.alphasLoaded = !entry.model.modules.some(m => m.alphaSource === 'tensor');
		}

		entry.training = parseTraining(header.metadata);
	} catch (error) {
		entry.error = oneLine(errorReason(error));
	}

	return entry;
}

function oneLine(text: string): string {
	const line = text.split(/\r?\n/, 1)[0] ?? '';
	return line.length > 300 ? `${line.slice(0, 299)}…` : line;
}
