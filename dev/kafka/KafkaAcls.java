// Grants Kafka ACLs with Kafka's own Java Admin client (kafka-clients, already on the stack's
// classpath). Kafka 4 moved the kafka-acls tool to the kafka-tools artifact, which the stack
// does not resolve; this is the same AdminClient#createAcls call that tool makes.
//
// Run as a single-file program (no build step):
//   java -cp '.cache/kafka/lib/*' dev/kafka/KafkaAcls.java <bootstrap> <client.properties> \
//        <principal> <TOPIC|GROUP|CLUSTER>:<name>:<OPERATION>[,<OPERATION>...] ...
// e.g. User:ledger TOPIC:campaign.feedback:READ,WRITE,DESCRIBE GROUP:campaign-ledger:READ
// <client.properties> holds the admin's connection settings (security.protocol, sasl...);
// "-" for none. Prints every ACL in force afterwards, one a line.

import java.io.FileReader;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaAcls {
    public static void main(String[] args) throws Exception {
        if (args.length < 4) {
            System.err.println("usage: KafkaAcls <bootstrap> <client.properties|-> <principal> "
                    + "<TYPE>:<name>:<OP>[,<OP>...] ...");
            System.exit(2);
        }
        Properties config = new Properties();
        if (!args[1].equals("-")) {
            try (FileReader reader = new FileReader(args[1])) {
                config.load(reader);
            }
        }
        config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        String principal = args[2];
        List<AclBinding> bindings = new ArrayList<>();
        for (int i = 3; i < args.length; i++) {
            String spec = args[i];
            int first = spec.indexOf(':');
            int last = spec.lastIndexOf(':');
            ResourceType type = ResourceType.fromString(spec.substring(0, first));
            String name = spec.substring(first + 1, last);
            for (String operation : spec.substring(last + 1).split(",")) {
                bindings.add(new AclBinding(
                        new ResourcePattern(type, name, PatternType.LITERAL),
                        new AccessControlEntry(principal, "*", AclOperation.fromString(operation),
                                AclPermissionType.ALLOW)));
            }
        }
        try (Admin admin = Admin.create(config)) {
            admin.createAcls(bindings).all().get();
            for (AclBinding binding : admin.describeAcls(AclBindingFilter.ANY).values().get()) {
                System.out.println(binding);
            }
        }
    }
}
