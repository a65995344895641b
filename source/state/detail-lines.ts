// The lines of the current detail tab, built from state by the per-tab builders and memoised on
// exactly what they depend on, so moving the cursor or re-rendering never rebuilds them.
import {isLightEntry} from '../lora/entry.js';
import {blocksLines} from './tab-blocks.js';
import {datasetLines} from './tab-dataset.js';
import {metadataLines} from './tab-metadata.js';
import {overviewLines} from './tab-overview.js';
import {tagsLines} from './tab-tags.js';
import {trainingOf} from './entry-shape.js';
import {line, seg, type Line} from './lines.js';
import {selectedRow, statsFor, statsKeyOf} from './selectors.js';
import {withHashSection} from './hash-lines.js';
import type {AppState, TabId} from './types.js';

type Memo = {deps: unknown[]; lines: Line[]};
const memos = new Map<TabId, Memo>();

function memo(tab: TabId, deps: unknown[], build: () => Line[]): Line[] {
	const previous = memos.get(tab);
	if (previous && previous.deps.length === deps.length && previous.deps.every((d, i) => Object.is(d, deps[i]))) {
		return previous.lines;
	}

	const lines = build();
	memos.set(tab, {deps, lines});
	return lines;
}

/** Content width of the detail pane (inside border and a one-column margin). */
export function detailContentWidth(state: AppState): number {
	return Math.max(20, state.viewport.detailWidth - 1);
}

export function tabLines(state: AppState, tab: TabId): Line[] {
	const row = selectedRow(state);
	const width = detailContentWidth(state);
	const {env, detail} = state;
	if (!row) {
		return [line([seg(state.scan.state === 'ready' ? 'No file selected.' : `Loading${env.unicode ? '…' : '...'}`, 'dim')])];
	}

	// A light entry (from a scan worker) is read again in full as soon as it is selected.
	if (row.status === 'pending' || isLightEntry(row.entry)) {
		return [line([seg(`Reading header${env.unicode ? '…' : '...'}`, 'dim')])];
	}

	if (row.status === 'error') {
		return [line([seg('This file could not be read: ', 'error'), seg(row.error ?? 'unknown reason')])];
	}

	const entry = row.entry;
	switch (tab) {
		case 'overview': {
			const stats = statsFor(state, row.path);
			// The Hashes section (issue 5) sits under "Hashes in metadata": hash-lines.ts.
			const hashes = state.tools.hashes[statsKeyOf(row)];
			return memo(tab, [entry, stats?.result, detail.explain, width, env, hashes], () => withHashSection(overviewLines(row, stats?.result, {explain: detail.explain, width, env}), hashes, width, env));
		}

		case 'metadata': {
			return memo(tab, [entry, detail.metadataQuery, width, env], () => metadataLines(entry?.header?.metadata, detail.metadataQuery, width, env));
		}

		case 'tags': {
			return memo(tab, [entry, detail.tagsMode, detail.tagsQuery, detail.tagsSelected, width, env], () =>
				tagsLines(trainingOf(entry), {mode: detail.tagsMode, query: detail.tagsQuery, picked: detail.tagsSelected, width, env}),
			);
		}

		case 'dataset': {
			return memo(tab, [entry, width, env], () => datasetLines(trainingOf(entry), width, env));
		}

		case 'blocks': {
			const slot = statsFor(state, row.path);
			return memo(tab, [entry, slot, detail.moduleSort, width, env], () => blocksLines(slot, detail.moduleSort, width, env));
		}
	}
}

export function currentTabLines(state: AppState): Line[] {
	return tabLines(state, state.detail.tab);
}

export function cursorLine(state: AppState): Line | undefined {
	return currentTabLines(state)[state.detail.cursor[state.detail.tab]];
}

/** The id (key) of the line under the cursor of the current tab. */
export function cursorKey(state: AppState): string | undefined {
	return cursorLine(state)?.key;
}
