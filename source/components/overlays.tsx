// Full-body views: the `?` help (every key of the view underneath, disabled ones with their reason),
// the engine log, and compare. Each is a list of lines in a bordered box.
import {Box} from 'ink';
import {helpSections, viewTitles} from '../keymap.js';
import {compareLinesMemo} from '../state/compare-lines.js';
import {glyphs} from '../state/glyphs.js';
import {blank, line, seg, type Line} from '../state/lines.js';
import {baseView} from '../state/selectors.js';
import {clean, fit} from '../state/text.js';
import type {AppState, TerminalEnv} from '../state/types.js';
import {asciiKey} from './bars.js';
import {LineRow, LineView} from './line-view.js';
import {borderColor} from './theme.js';

export function helpLines(state: AppState, width: number): Line[] {
	const {env} = state;
	const lines: Line[] = [];
	const sections = helpSections(state, baseView(state));
	const longest = Math.max(...sections.flatMap(section => section.rows.map(row => row.label.length)));
	const labelWidth = Math.min(longest, width - 11);
	for (const section of sections) {
		lines.push(line([seg(section.title, 'heading')]));
		for (const row of section.rows) {
			const key = fit(asciiKey(row.key, env), 8, env);
			const reason = row.disabled ? `  ${row.disabled}` : '';
			// A disabled key's reason goes on the next line when it does not fit beside the label.
			const beside = 11 + labelWidth + reason.length <= width;
			lines.push(
				line([
					seg(`  ${key} `, row.disabled ? 'dim' : 'accent'),
					seg(beside ? fit(row.label, labelWidth, env) : row.label, row.disabled ? 'dim' : 'text'),
					seg(beside ? reason : '', 'warn'),
				]),
			);
			if (!beside && reason !== '') {
				lines.push(line([seg(' '.repeat(11)), seg(row.disabled ?? '', 'warn')]));
			}
		}

		lines.push(blank);
	}

	lines.push(line([seg('Filter syntax: text  field:value  rank>=32  arch:sdxl  optimizer:prodigy  tag:x  size<100mb  is:new  -term', 'dim')]));
	return lines;
}

function Panel({title, lines, scroll, width, height, env}: {title: string; lines: readonly Line[]; scroll: number; width: number; height: number; env: TerminalEnv}) {
	return (
		<Box flexDirection="column" width={width} height={height} borderStyle={glyphs(env).borderStyle} borderColor={borderColor(true, env)} overflow="hidden">
			<LineRow line={line([seg(title, 'heading')])} env={env} width={Math.max(0, width - 2)} highlighted={false} />
			<LineView lines={lines} scroll={scroll} rows={Math.max(0, height - 3)} width={Math.max(0, width - 2)} env={env} />
		</Box>
	);
}

export function HelpOverlay({state, width, height}: {state: AppState; width: number; height: number}) {
	const lines = helpLines(state, width - 2);
	return <Panel title={`Keys: ${viewTitles[baseView(state)]}  (esc closes)`} lines={lines} scroll={state.helpScroll} width={width} height={height} env={state.env} />;
}

export function LogView({state, width, height}: {state: AppState; width: number; height: number}) {
	const {env} = state;
	const lines = state.logs.length === 0
		? [line([seg(`No engine messages yet. Engine: ${state.engine.state}${state.engine.device ? ` on ${state.engine.device}` : ''}.`, 'dim')])]
		: state.logs.map(entry => line([seg(fit(entry.level, 6, env), entry.level === 'error' ? 'error' : entry.level === 'warn' ? 'warn' : 'dim'), seg(clean(entry.message, env, 1000))]));
	const engine = `${state.engine.state}${state.engine.device ? ` on ${state.engine.device}` : ''}${state.engine.detail ? ` (${clean(state.engine.detail, env, 80)})` : ''}`;
	return <Panel title={`Engine log: ${engine}`} lines={lines} scroll={state.logScroll} width={width} height={height} env={env} />;
}

export function CompareView({state, width, height}: {state: AppState; width: number; height: number}) {
	const lines = compareLinesMemo(state, width - 3);
	const title = (state.compare?.paths.length ?? 0) > 2 ? 'Compare epochs' : 'Compare';
	return <Panel title={`${title}  (esc back)`} lines={lines} scroll={state.compare?.scroll ?? 0} width={width} height={height} env={state.env} />;
}
