"""Write bench/pairs/: the held-out (content, style) pairs bench/quality.py evaluates, taken from the
Debian packages the training corpus comes from, but only images every shipped decoder was held out
from (training/heldout.txt), shrunk to a shorter side of 320 px.

    python scripts/eval_pairs.py [--debs /tmp/debs]   # apt-get download the 5 packages (~600 MB)

Public-domain and CC-BY-SA / GPL images: bench/pairs/MANIFEST.tsv names each one's package, path
and licence."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from model.images import resize_shorter
from training.corpus import PACKAGES, deb_files, deb_version, download, pinned_heldout, prepare, safe_name

OUT = Path(__file__).resolve().parent.parent / "bench" / "pairs"
SIDE = 320
# name in bench/pairs -> the held-out image's name (training/heldout.txt)
PICKS = {
    "content/beach.jpg": "endless-sky-data__games_endless_sky_images_land_beach3.jpg",
    "content/canyon.jpg": "endless-sky-data__games_endless_sky_images_land_canyon3.jpg",
    "content/city.jpg": "endless-sky-data__games_endless_sky_images_land_city2.jpg",
    "content/valley.jpg": "endless-sky-data__games_endless_sky_images_land_valley3.jpg",
    "content/kitchen.jpg": "scratch__scratch_Media_Backgrounds_Indoors_kitchen.jpg",
    "content/lake.jpg": "scratch__scratch_Media_Backgrounds_Nature_lake.jpg",
    "content/tree.jpg": "scratch__scratch_Media_Backgrounds_Nature_tree.jpg",
    "content/building.jpg": "scratch__scratch_Media_Backgrounds_Outdoors_building_fireproof.jpg",
    "style/night-cafe.jpg": "gcompris-qt-data__gcompris_qt_rcc_details_rcc_gcompris_src_activities_details_resource_"
                            "image_Van_Gogh_The_Night_Cafe_background.jpg",
    "style/bridge.jpg": "gcompris-qt-data__gcompris_qt_rcc_details_rcc_gcompris_src_activities_details_resource_"
                        "image_VincentVanGoghBridge_background.jpg",
    "style/auvers-church.jpg": "gcompris-qt-data__gcompris_qt_rcc_details_rcc_gcompris_src_activities_details_"
                               "resource_image_Eglise_dAuvers_sur_Oise_background.jpg",
    "style/wood.jpg": "ufoai-textures__games_ufoai_base_0textures_pk3_textures_tex_mattn_wood015.jpg",
    "style/desert.jpg": "ufoai-textures__games_ufoai_base_0textures_pk3_textures_tex_nature_desert006.jpg",
    "style/lady.jpg": "ufoai-textures__games_ufoai_base_0textures_pk3_textures_tex_pics_art_portrait_bw_lady.jpg",
    "style/gryphon.jpg": "wesnoth-1.16-data__games_wesnoth_1_16_data_core_images_portraits_monsters_gryphon.jpg",
    "style/mountains.jpg": "wesnoth-1.16-data__games_wesnoth_1_16_data_core_images_story_landscape_mountains_04.jpg",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--debs", type=Path, default=Path("/tmp/debs"))
    args = p.parse_args()
    wanted = {v: k for k, v in PICKS.items()}
    if not set(wanted) <= set(pinned_heldout()):
        raise SystemExit(f"not held out: {sorted(set(wanted) - set(pinned_heldout()))}")
    names = sorted({n.split("__")[0] for n in wanted})
    debs = download(names, args.debs)
    rows = []
    for pkg in (p for p in PACKAGES if p.name in names):
        for path, data in deb_files(debs[pkg.name], re.compile(pkg.include)):
            out = wanted.pop(safe_name(pkg.name, path), None)
            if out is None:
                continue
            img, why = prepare(path, data)
            if img is None:
                raise SystemExit(f"{path}: {why}")
            (OUT / out).parent.mkdir(parents=True, exist_ok=True)
            resize_shorter(img, SIDE).save(OUT / out, quality=92)
            rows.append(f"{out}\t{pkg.name}\t{deb_version(debs[pkg.name])}\t{path}\t{pkg.licence}")
    if wanted:
        raise SystemExit(f"not found: {sorted(wanted)}")
    (OUT / "MANIFEST.tsv").write_text("file\tpackage\tversion\tsource path\tlicence\n" + "\n".join(sorted(rows)) + "\n")
    print(f"wrote {len(rows)} images to {OUT}")


if __name__ == "__main__":
    main()
