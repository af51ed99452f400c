package org.careway.hl7receiver;

import ca.uhn.hl7v2.AcknowledgmentCode;
import ca.uhn.hl7v2.DefaultHapiContext;
import ca.uhn.hl7v2.HL7Exception;
import ca.uhn.hl7v2.HapiContext;
import ca.uhn.hl7v2.app.HL7Service;
import ca.uhn.hl7v2.llp.MinLowerLayerProtocol;
import ca.uhn.hl7v2.model.Message;
import ca.uhn.hl7v2.protocol.MetadataKeys;
import ca.uhn.hl7v2.protocol.ReceivingApplication;
import ca.uhn.hl7v2.util.Terser;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A stand-in EHR for Careway's outbound HL7 tests: HAPI's own MLLP server ({@link HL7Service}) with a
 * {@link ReceivingApplication} that records every message and answers it.
 *
 * <p>Usage: {@code Hl7Receiver <port> [silentMs]}. It listens on the port, prints
 * {@code {"event":"ready","port":N}} once it accepts connections, then one JSON line per message received:
 * {@code {"event":"received","structure":"SIU_S12","type":"SIU^S12","controlId":…,"ack":"AA","paths":{…},"er7":…}}.
 * {@code paths} are values read with HAPI's Terser at group paths of the parsed structure (e.g.
 * {@code /RESOURCES/PERSONNEL_RESOURCE/AIP-3-1}), so a segment out of its place in the structure shows as missing.
 * Messages HAPI cannot parse are printed as {@code {"event":"error",…}} and answered by HAPI itself.
 *
 * <p>The answer is AA, unless PID-3.1 or SCH-1.1 contains a marker: {@code NACK-AE} → AE with an ERR segment,
 * {@code NACK-AR} → AR, {@code SILENT} → no answer for {@code silentMs} (default 120 s), so a sender's
 * timeout can be driven. Every line is flushed at once: the test reads stdout as it comes.
 */
public final class Hl7Receiver {
  /** Where a test looks for what Careway sent: the message's groups as HAPI parsed them. */
  private static final List<String> PATHS =
      List.of(
          "/MSH-9-1",
          "/MSH-9-2",
          "/MSH-10",
          "/MSH-12-1",
          "/SCH-1-1",
          "/SCH-2-1",
          "/SCH-25-1",
          "/TQ1-7-1",
          "/TQ1-8-1",
          "/PATIENT/PID-3-1",
          "/PATIENT/PID-5-1",
          "/PATIENT/PV1-2",
          "/RESOURCES/RGS-1",
          "/RESOURCES/SERVICE/AIS-3-1",
          "/RESOURCES/PERSONNEL_RESOURCE/AIP-3-1",
          "/RESOURCES/LOCATION_RESOURCE/AIL-3-1");

  private static final PrintStream OUT = new PrintStream(System.out, true, StandardCharsets.UTF_8);

  private Hl7Receiver() {}

  public static void main(String[] args) throws Exception {
    if (args.length < 1) {
      System.err.println("usage: Hl7Receiver <port> [silentMs]");
      System.exit(2);
    }
    int port = Integer.parseInt(args[0]);
    long silentMs = args.length > 1 ? Long.parseLong(args[1]) : 120_000L;
    HapiContext context = new DefaultHapiContext();
    // Read each message in the charset its MSH-18 names (UNICODE UTF-8 from Careway), as a real EHR would.
    context.setLowerLayerProtocol(new MinLowerLayerProtocol(true));
    HL7Service server = context.newServer(port, false);
    server.registerApplication("*", "*", new Recorder(silentMs));
    server.setExceptionHandler(
        (incoming, metadata, outgoing, e) -> {
          Map<String, Object> line = new LinkedHashMap<>();
          line.put("event", "error");
          line.put("error", String.valueOf(e.getMessage()));
          line.put("er7", incoming == null ? "" : incoming);
          OUT.println(Json.object(line));
          return outgoing;
        });
    Runtime.getRuntime().addShutdownHook(new Thread(server::stop));
    server.startAndWait();
    OUT.println("{\"event\":\"ready\",\"port\":" + port + "}");
    Thread.currentThread().join();
  }

  static final class Recorder implements ReceivingApplication<Message> {
    private final long silentMs;

    Recorder(long silentMs) {
      this.silentMs = silentMs;
    }

    @Override
    public boolean canProcess(Message message) {
      return true;
    }

    @Override
    public Message processMessage(Message message, Map<String, Object> metadata) throws HL7Exception {
      Terser t = new Terser(message);
      String marker = read(t, "/.PID-3-1") + " " + read(t, "/.SCH-1-1");
      String ack =
          marker.contains("NACK-AE")
              ? "AE"
              : marker.contains("NACK-AR") ? "AR" : marker.contains("SILENT") ? "none" : "AA";
      Map<String, Object> paths = new LinkedHashMap<>();
      for (String p : PATHS) {
        String v = read(t, p);
        if (!v.isEmpty()) paths.put(p, v);
      }
      Map<String, Object> line = new LinkedHashMap<>();
      line.put("event", "received");
      line.put("structure", message.getName());
      line.put("type", read(t, "/MSH-9-1") + "^" + read(t, "/MSH-9-2"));
      line.put("controlId", read(t, "/MSH-10"));
      line.put("ack", ack);
      line.put("paths", paths);
      Object raw = metadata.get(MetadataKeys.IN_RAW_MESSAGE);
      line.put("er7", raw == null ? message.encode() : raw.toString());
      OUT.println(Json.object(line));
      try {
        switch (ack) {
          case "AE":
            return message.generateACK(
                AcknowledgmentCode.AE,
                new HL7Exception("the test EHR refuses this message (NACK-AE)"));
          case "AR":
            return message.generateACK(
                AcknowledgmentCode.AR,
                new HL7Exception("the test EHR rejects this message (NACK-AR)"));
          case "none":
            // Hold the connection without answering: the sender's ACK timeout is what is under test.
            Thread.sleep(silentMs);
            return message.generateACK();
          default:
            return message.generateACK();
        }
      } catch (java.io.IOException e) {
        throw new HL7Exception(e);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new HL7Exception("interrupted");
      }
    }

    private static String read(Terser t, String path) {
      try {
        String v = t.get(path);
        return v == null ? "" : v;
      } catch (HL7Exception | RuntimeException e) {
        return "";
      }
    }
  }

  /** Just enough JSON for flat string maps, one level of nesting. */
  static final class Json {
    private Json() {}

    @SuppressWarnings("unchecked")
    static String object(Map<String, Object> m) {
      StringBuilder b = new StringBuilder("{");
      boolean first = true;
      for (Map.Entry<String, Object> e : m.entrySet()) {
        if (!first) b.append(',');
        first = false;
        b.append(string(e.getKey())).append(':');
        Object v = e.getValue();
        b.append(v instanceof Map ? object((Map<String, Object>) v) : string(String.valueOf(v)));
      }
      return b.append('}').toString();
    }

    static String string(String s) {
      StringBuilder b = new StringBuilder("\"");
      for (int i = 0; i < s.length(); i++) {
        char c = s.charAt(i);
        switch (c) {
          case '"' -> b.append("\\\"");
          case '\\' -> b.append("\\\\");
          case '\n' -> b.append("\\n");
          case '\r' -> b.append("\\r");
          case '\t' -> b.append("\\t");
          default -> {
            if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
          }
        }
      }
      return b.append('"').toString();
    }
  }
}
