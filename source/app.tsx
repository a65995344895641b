// The dashboard root: state store, terminal size → layout, the one key router (the only useInput),
// folder loading, watching and stats jobs; and the single exit call site with an error boundary.
import {Component, useCallback, useEffect, useRef, useState, type ErrorInfo, type ReactNode} from 'react';
import {useApp, useInput, useStdout} from 'ink';
import {Frame} from './components/frame.js';
import {fileSystemSource} from './hooks/folder-source.js';
import type {EngineFactory} from './hooks/stats-engine.js';
import {useExactEntries, useFolder, type FolderSource} from './hooks/use-folder.js';
import {useSharedEngine} from './hooks/shared-engine.js';
import {useStats} from './hooks/use-stats.js';
import {useToolJobs} from './hooks/use-tool-jobs.js';
import {useStore} from './hooks/use-store.js';
import {useTerminalSize} from './hooks/use-terminal-size.js';
import {useWatch} from './hooks/use-watch.js';
import {isEffect, keyPressesFrom, routeKey, type Effect} from './keymap.js';
import {isTypingView} from './keymap-tools.js';
import {computeLayout, type Layout} from './layout.js';
import {sanitizeText} from './lora/sanitize.js';
import type {Action} from './state/reducer.js';
import {initialState} from './state/reducer.js';
import {baseView, selectedRow, topView} from './state/selectors.js';
import type {TerminalEnv, Viewport} from './state/types.js';

export type AppProps = {
	folder: string;
	env: TerminalEnv;
	/** Where files come from (tests inject one); defaults to the file system. */
	source?: FolderSource;
	/** Creates the engine on first need; without one, the Blocks tab says statistics are unavailable. */
	engine?: EngineFactory;
	/** Watch the folder for new and rewritten files (default true). */
	watch?: boolean;
	/** Writes the OSC 52 clipboard sequence; defaults to Ink's stdout. */
	onCopy?: (sequence: string) => void;
	/** Milliseconds between clock ticks that refresh "5m ago" ages (default 15 s). */
	tickMs?: number;
	/** `--out`: the folder resized files are written to (default: next to the source). */
	resizeOutDir?: string;
	/** `--base`: the checkpoint the Resize view's spn_ckpt / fro_ckpt recipes score against. */
	resizeBase?: string;
};

/** OSC 52 "set clipboard" with base64 text: the one escape sequence the app emits itself, on `y` only. */
export function osc52(text: string): string {
	return `\u001B]52;c;${Buffer.from(text, 'utf8').toString('base64')}\u0007`;
}

function viewportOf(layout: Layout): Viewport {
	return {
		listRows: layout.listRows,
		detailRows: layout.detailRows,
		// Inside the detail border.
		detailWidth: Math.max(0, layout.detail.innerWidth),
		bodyRows: layout.body.height,
		bodyWidth: layout.body.width,
	};
}

function useNow(tickMs: number): number {
	const [now, setNow] = useState(() => Date.now());
	useEffect(() => {
		const timer = setInterval(() => {
			setNow(Date.now());
		}, tickMs);
		timer.unref();
		return () => {
			clearInterval(timer);
		};
	}, [tickMs]);
	return now;
}

export function App({folder, env, source = fileSystemSource, engine, watch = true, onCopy, tickMs = 15_000, resizeOutDir, resizeBase, onQuit}: AppProps & {onQuit: () => void}) {
	const size = useTerminalSize();
	const {stdout} = useStdout();
	const {state, dispatch, getState} = useStore(() => {
		const initial = initialState(folder, env);
		return {...initial, viewport: viewportOf(computeLayout(size))};
	});
	const layout = computeLayout({...size, focus: baseView(state) === 'detail' ? 'detail' : 'list'});
	const layoutRef = useRef(layout);
	layoutRef.current = layout;
	const viewport = viewportOf(layout);
	const {listRows, detailRows, detailWidth, bodyRows, bodyWidth} = viewport;
	useEffect(() => {
		dispatch({type: 'viewport', viewport: {listRows, detailRows, detailWidth, bodyRows, bodyWidth}});
	}, [dispatch, listRows, detailRows, detailWidth, bodyRows, bodyWidth]);

	useFolder(folder, source, dispatch, getState);
	useExactEntries(source, [selectedRow(state)?.entry, ...(state.compare?.paths ?? []).map(path => state.rows.get(path)?.entry)], dispatch);
	useWatch(folder, watch, source, dispatch, getState);
	// Statistics and the tools (resize, hashes, metadata saves) share one engine process.
	const sharedEngine = useSharedEngine(engine, dispatch);
	useStats(state, dispatch, getState, sharedEngine.statsFactory);
	useToolJobs(state, dispatch, getState, sharedEngine, source, resizeOutDir ?? null, resizeBase ?? null);
	const now = useNow(tickMs);

	const runEffect = useCallback(
		(effect: Effect) => {
			switch (effect.kind) {
				case 'quit': {
					onQuit();
					break;
				}

				case 'copy': {
					// Control characters never go into the clipboard; base64 keeps the sequence itself inert.
					const text = sanitizeText(effect.text, {singleLine: true});
					(onCopy ?? ((sequence: string) => stdout.write(sequence)))(osc52(text));
					dispatch({type: 'status', status: {text: `copied ${effect.what} to the clipboard (OSC 52)`, level: 'info'}});
					break;
				}
			}
		},
		[dispatch, onCopy, onQuit, stdout],
	);

	const handleInput = useCallback(
		(input: string, key: Parameters<Parameters<typeof useInput>[0]>[1]) => {
			for (const press of keyPressesFrom(input, key, isTypingView(topView(getState())))) {
				// Each key is routed against the state the previous one produced.
				const result = routeKey(getState(), press, {tooSmall: layoutRef.current.mode === 'too-small'});
				const actions: Action[] = [];
				const effects: Effect[] = [];
				for (const outcome of result.outcomes) {
					if (isEffect(outcome)) {
						effects.push(outcome);
					} else {
						actions.push(outcome);
					}
				}

				if (actions.length > 0) {
					dispatch(actions);
				}

				for (const effect of effects) {
					runEffect(effect);
				}
			}
		},
		[dispatch, getState, runEffect],
	);
	useInput(handleInput);

	return <Frame state={state} layout={layout} now={now} />;
}

type BoundaryProps = {onError: (error: Error) => void; children: ReactNode};

/** A bug in rendering reaches here: the app exits through the root, which restores the terminal and prints the stack. */
class ErrorBoundary extends Component<BoundaryProps, {failed: boolean}> {
	override state = {failed: false};

	static getDerivedStateFromError(): {failed: boolean} {
		return {failed: true};
	}

	override componentDidCatch(error: Error, _info: ErrorInfo): void {
		this.props.onError(error);
	}

	override render(): ReactNode {
		return this.state.failed ? null : this.props.children;
	}
}

/** The single owner of exit(): quitting and fatal errors both end here. */
export function Root(props: AppProps) {
	const {exit} = useApp();
	const quit = useCallback(() => {
		exit();
	}, [exit]);
	const fail = useCallback(
		(error: Error) => {
			exit(error);
		},
		[exit],
	);
	return (
		<ErrorBoundary onError={fail}>
			<App {...props} onQuit={quit} />
		</ErrorBoundary>
	);
}
