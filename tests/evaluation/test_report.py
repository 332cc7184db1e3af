"""Reports: published anchors are read with their sources and drawn on the matching dataset."""

from hific_diffusion.evaluation import report


def test_published_points_have_sources_and_only_match_their_dataset():
    points = report.published_points("clic20")
    assert {p["method"] for p in points} >= {"HiFiC", "MS-ILLM"}
    assert all(p["source"] and float(p["bpp"]) > 0 for p in points)
    assert report.published_points("kodak") == []


def test_plots_and_table_for_clic20(tmp_path):
    per_decoder = {
        "mse": {"bpp": 0.2, "psnr": 32.0, "ms_ssim": 0.97, "lpips": 0.2, "fid": 9.0, "images": 2},
        "diffusion": {"bpp": 0.2, "psnr": 30.0, "ms_ssim": 0.96, "lpips": 0.1, "fid": None},
    }
    report.plot_rd(per_decoder, "clic20", tmp_path / "rd.png")
    report.plot_rate_fid(per_decoder, "clic20", tmp_path / "fid.png")
    assert (tmp_path / "rd.png").stat().st_size > 10_000
    assert (tmp_path / "fid.png").stat().st_size > 10_000
    lines = report.table(per_decoder).splitlines()
    assert lines[2].split()[:4] == ["mse", "0.2000", "-", "32.00"]
    assert lines[3].split()[6] == "-"  # missing FID shown as '-'
