# Homebrew formula for metal-guard.
#
# UNTESTED HERE: written on a Linux machine without Homebrew or a Mac, so it has
# never been run by `brew`. Check it on an Apple Silicon Mac before publishing:
#   brew install --build-from-source --HEAD ./packaging/homebrew/metal-guard.rb
#   brew test metal-guard && brew audit --strict --formula metal-guard
#
# HEAD-only until the first tagged release; then add `url` (the release tarball)
# and its `sha256`, and drop the `--HEAD` from the commands above.
#
# Layout (the launcher finds the library relative to its own real path):
#   bin/metal-guard, bin/mlx-safe-python
#   lib/metal_guard/libmetal_guard_inject.dylib   (= bin/../lib/metal_guard/)
# `import metal_guard` is not part of this formula: Python apps get it with
# `pip install metal-guard` (docs/install.md).
class MetalGuard < Formula
  desc "Keep Apple's IOGPUFamily driver bug from rebooting your Mac while MLX runs"
  homepage "https://github.com/metal-guard/metal-guard"
  license "MIT"
  head "https://github.com/metal-guard/metal-guard.git", branch: "main"

  depends_on "rust" => :build
  # The driver bug, the hooks and the injected library are Apple Silicon only.
  depends_on arch: :arm64
  depends_on macos: :big_sur
  # `brew test` runs the launcher's handshake with a Python that accepts
  # DYLD_INSERT_LIBRARIES (Homebrew's Python is not a hardened-runtime binary).
  depends_on "python@3.13" => :test

  def install
    # Both executables of the root package: metal-guard and mlx-safe-python.
    system "cargo", "install", *std_cargo_args
    # The injected library is a separate crate; the launcher looks in ../lib/metal_guard/.
    system "cargo", "build", "--release", "--locked", "--package", "metal-guard-inject"
    (lib/"metal_guard").install "target/release/libmetal_guard_inject.dylib"
  end

  def caveats
    <<~EOS
      Protect one run:            mlx-safe-python train.py
      Explain a past panic:       metal-guard diagnose
      Route interactive python through the guard:
                                  metal-guard guard install
      Uninstall without a trace:  metal-guard guard uninstall && brew uninstall metal-guard
                                  rm -rf ~/.cache/metal-guard ~/.metal-guard ~/.metal-guard-ack
    EOS
  end

  test do
    assert_match "metal-guard", shell_output("#{bin}/metal-guard --version")
    assert_predicate lib/"metal_guard/libmetal_guard_inject.dylib", :exist?
    ENV["MLX_SAFE_PYTHON_BIN"] = Formula["python@3.13"].opt_bin/"python3.13"
    ENV["METALGUARD_PANIC_REPORT_DIRS"] = testpath.to_s
    system bin/"mlx-safe-python", "--check"
  end
end
