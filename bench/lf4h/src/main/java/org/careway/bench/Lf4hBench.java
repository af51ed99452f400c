package org.careway.bench;

import io.github.linuxforhealth.hl7.ConverterOptions;
import io.github.linuxforhealth.hl7.HL7ToFHIRConverter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.hl7.fhir.r4.model.Bundle;

/**
 * Bench P1's comparator: converts every message file in a directory (one message per file, as Careway's P1 sees
 * them) with the LinuxForHealth converter on one thread, warm-up first, and prints one JSON line with the rate.
 * Messages the converter refuses (types it has no template for) are counted and left out of the timed rounds,
 * so the rate is over what it converts. Args: directory, timed messages per round, rounds.
 */
public final class Lf4hBench {
  public static void main(String[] args) throws Exception {
    Path dir = Path.of(args[0]);
    int perRound = Integer.parseInt(args[1]);
    int rounds = Integer.parseInt(args[2]);
    List<String> all = new ArrayList<>();
    List<String> names = new ArrayList<>();
    try (Stream<Path> files = Files.list(dir)) {
      for (Path p : files.sorted().toList()) {
        all.add(new String(Files.readAllBytes(p), StandardCharsets.UTF_8));
        names.add(p.getFileName().toString());
      }
    }
    HL7ToFHIRConverter converter = new HL7ToFHIRConverter();
    ConverterOptions options =
        new ConverterOptions.Builder()
            .withBundleType(Bundle.BundleType.TRANSACTION)
            .withZoneIdText("America/Chicago")
            .build();
    List<String> ok = new ArrayList<>();
    List<String> okNames = new ArrayList<>();
    List<String> refused = new ArrayList<>();
    for (int i = 0; i < all.size(); i++) {
      String m = all.get(i);
      try {
        String out = converter.convert(m, options);
        if (out == null || out.isEmpty()) refused.add(names.get(i));
        else {
          ok.add(m);
          okNames.add(names.get(i));
        }
      } catch (RuntimeException e) {
        refused.add(names.get(i));
      }
    }
    if (ok.isEmpty()) {
      System.out.println("{\"converted\":[],\"refused\":" + quoted(refused) + "}");
      return;
    }
    for (int i = 0; i < Math.max(2_000, perRound / 2); i++) converter.convert(ok.get(i % ok.size()), options);
    double[] rates = new double[rounds];
    for (int r = 0; r < rounds; r++) {
      long t0 = System.nanoTime();
      for (int i = 0; i < perRound; i++) converter.convert(ok.get(i % ok.size()), options);
      rates[r] = perRound / ((System.nanoTime() - t0) / 1e9);
    }
    java.util.Arrays.sort(rates);
    System.out.println(
        "{\"converted\":"
            + quoted(okNames)
            + ",\"refused\":"
            + quoted(refused)
            + ",\"perSecond\":"
            + rates[rounds / 2]
            + "}");
  }

  private static String quoted(List<String> xs) {
    return "[" + String.join(",", xs.stream().map(x -> "\"" + x + "\"").toList()) + "]";
  }
}
