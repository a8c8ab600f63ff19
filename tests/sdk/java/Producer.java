import io.cloudevents.CloudEvent;
import io.cloudevents.core.format.EventFormat;
import io.cloudevents.core.provider.EventFormatProvider;
import io.cloudevents.jackson.JsonFormat;
import io.cloudevents.kafka.CloudEventSerializer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Sends CloudEvents the way a generation agent written in Java would: the official CloudEvents
 * SDK's Kafka serializer on the Apache Kafka producer.
 *
 * <p>Usage: {@code java Producer <bootstrap> <scenario file>}. Each line of the scenario is
 * {@code mode TAB topic TAB key TAB event}, where mode is {@code binary} (the serializer's
 * default settings) or {@code structured}, key is {@code -} for none, and event is a
 * CloudEvent in the JSON format, read with the SDK's own JSON format.
 */
public final class Producer {
  private Producer() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 2) {
      System.err.println("usage: java Producer <bootstrap servers> <scenario file>");
      System.exit(2);
    }
    EventFormat json = EventFormatProvider.getInstance().resolveFormat(JsonFormat.CONTENT_TYPE);
    List<String> lines = Files.readAllLines(Path.of(args[1]), StandardCharsets.UTF_8);
    // Default settings: the serializer sends binary content mode.
    Properties binary = settings(args[0]);
    Properties structured = settings(args[0]);
    structured.put(CloudEventSerializer.ENCODING_CONFIG, "STRUCTURED");
    structured.put(CloudEventSerializer.EVENT_FORMAT_CONFIG, JsonFormat.CONTENT_TYPE);
    int sent = 0;
    try (KafkaProducer<String, CloudEvent> binaryProducer = new KafkaProducer<>(binary);
        KafkaProducer<String, CloudEvent> structuredProducer = new KafkaProducer<>(structured)) {
      for (String line : lines) {
        if (line.isBlank()) {
          continue;
        }
        String[] fields = line.split("\t", 4);
        if (fields.length != 4) {
          throw new IOException("a scenario line needs 4 tab-separated fields: " + line);
        }
        CloudEvent event = json.deserialize(fields[3].getBytes(StandardCharsets.UTF_8));
        String key = "-".equals(fields[2]) ? null : fields[2];
        KafkaProducer<String, CloudEvent> producer =
            switch (fields[0]) {
              case "binary" -> binaryProducer;
              case "structured" -> structuredProducer;
              default -> throw new IOException("unknown mode " + fields[0]);
            };
        // One at a time, acknowledged: the scenario's order is the order on each partition.
        RecordMetadata metadata = producer.send(new ProducerRecord<>(fields[1], key, event)).get();
        System.out.printf(
            "sent %s %s %s-%d@%d%n",
            fields[0], event.getId(), metadata.topic(), metadata.partition(), metadata.offset());
        sent++;
      }
    }
    System.out.printf("sent %d events%n", sent);
  }

  private static Properties settings(String bootstrap) {
    Properties properties = new Properties();
    properties.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    properties.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
    properties.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, CloudEventSerializer.class);
    properties.put(ProducerConfig.ACKS_CONFIG, "all");
    return properties;
  }
}
