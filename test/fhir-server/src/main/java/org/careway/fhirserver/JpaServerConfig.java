package org.careway.fhirserver;

import ca.uhn.fhir.batch2.api.IJobMaintenanceService;
import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.batch2.maintenance.JobMaintenanceServiceImpl;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.binary.api.IBinaryStorageSvc;
import ca.uhn.fhir.jpa.binstore.MemoryBinaryStorageSvcImpl;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import ca.uhn.fhir.narrative.INarrativeGenerator;
import ca.uhn.fhir.narrative2.NullNarrativeGenerator;
import jakarta.persistence.EntityManagerFactory;
import org.apache.commons.dbcp2.BasicDataSource;
import org.hl7.fhir.dstu2.model.Subscription;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

import javax.sql.DataSource;
import java.util.Properties;

/**
 * Spring wiring for a HAPI FHIR JPA server (R4) on in-memory H2 (or PostgreSQL: HAPI_JDBC_URL).
 *
 * <p>Everything FHIR-specific (DAOs, search, validation chain, subscriptions) comes from HAPI's own
 * configuration classes imported below; this class only supplies what HAPI expects the host
 * application to provide (database, JPA, settings) plus a few no-op services.</p>
 */
@Configuration
@Import({
	// R4 FhirContext, every DAO + resource provider, and JpaConfig (search, validation, terminology).
	JpaR4Config.class,
	// Helper beans JpaConfig needs but leaves to the host (paging provider, stale-search cleanup,
	// resource-count cache, full-text stubs). Using HAPI's class saves hand-listing them.
	HapiJpaConfig.class,
	// Batch2 is mandatory in 8.x: beans inside JpaConfig (reindex, $expunge, bulk export) depend on it.
	JpaBatch2Config.class,
	Batch2JobsConfig.class,
	ThreadPoolFactoryConfig.class,
	// REST-hook subscriptions: submitter (hooks into storage), processor (matcher + delivery) and the
	// in-JVM channels that connect them.
	SubscriptionSubmitterConfig.class,
	SubscriptionProcessorConfig.class,
	SubscriptionChannelConfig.class,
	// Our RestfulServer servlet.
	RestServerConfig.class
})
public class JpaServerConfig {
	private static final Logger ourLog = LoggerFactory.getLogger(JpaServerConfig.class);

	/** Fresh in-memory database per process; DB_CLOSE_DELAY=-1 keeps it alive while the pool cycles connections. */
	static final String JDBC_URL = "jdbc:h2:mem:hapi;DB_CLOSE_DELAY=-1";

	/**
	 * HAPI_JDBC_URL (with HAPI_JDBC_USER / HAPI_JDBC_PASSWORD) puts the server on PostgreSQL instead, for
	 * benchmarks at hospital scale: on H2, HAPI resolves the ids a transaction references with one OR-of-ANDs
	 * query that H2 answers with a table scan, so writes slow down in proportion to the database (PostgreSQL
	 * answers the same query from its indexes). The tests keep the in-memory H2.
	 */
	static final String CONFIGURED_URL = System.getenv("HAPI_JDBC_URL");

	static boolean onPostgres() {
		return CONFIGURED_URL != null && CONFIGURED_URL.startsWith("jdbc:postgresql:");
	}

	/** batch2 maintenance pass interval (HAPI's default is 60 s); see batch2MaintenanceInterval(). */
	static final long BATCH2_MAINTENANCE_INTERVAL_MS = 2_000;

	@Bean(destroyMethod = "close")
	public BasicDataSource dataSource() {
		BasicDataSource ds = new BasicDataSource();
		if (CONFIGURED_URL != null && !onPostgres()) {
			throw new IllegalStateException("HAPI_JDBC_URL: only jdbc:postgresql: URLs are supported");
		}
		if (onPostgres()) {
			ds.setDriverClassName("org.postgresql.Driver");
			ds.setUrl(CONFIGURED_URL);
			ds.setUsername(System.getenv().getOrDefault("HAPI_JDBC_USER", "postgres"));
			ds.setPassword(System.getenv().getOrDefault("HAPI_JDBC_PASSWORD", ""));
			ourLog.info("Database: PostgreSQL at {}", CONFIGURED_URL);
		} else {
			ds.setDriverClassName("org.h2.Driver");
			ds.setUrl(JDBC_URL);
			ds.setUsername("sa");
			ds.setPassword("");
		}
		// HAPI's search coordinator, batch2 and subscription threads each hold a connection while
		// request threads do too; 8 (the dbcp2 default) can starve under a parallel test suite.
		ds.setMaxTotal(30);
		// Keep them open: with dbcp2's default maxIdle of 8, every connection returned beyond 8 is closed and
		// the next burst opens new ones. On PostgreSQL each is a new backend process, so under load (bench P4)
		// the server spent its time forking backends.
		ds.setMaxIdle(30);
		ds.setMinIdle(8);
		return ds;
	}

	/** Must exist before the entity manager factory is built (HapiEntityManagerFactoryUtil reads it). */
	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	@Bean
	public JpaStorageSettings storageSettings() {
		JpaStorageSettings s = new JpaStorageSettings();

		// HAPI reuses an identical search's results for 60 s by default, so "search, create, search
		// again" would return the stale (e.g. empty) result. Tests and Careway's read-after-write
		// logic need fresh results.
		s.setReuseCachedSearchResultsForMillis(null);
		// Match-URL cache stays off (the default): a conditional create must see the latest data.
		s.setMatchUrlCacheEnabled(false);

		// Behave like a strict hospital server: references must resolve, and a referenced resource
		// cannot be deleted. Catches ordering bugs in our writes that a lax server would hide.
		s.setEnforceReferentialIntegrityOnWrite(true);
		s.setEnforceReferentialIntegrityOnDelete(true);
		s.setAllowExternalReferences(false);
		s.setAutoCreatePlaceholderReferenceTargets(false);

		// Client-assigned ids (PUT Patient/abc) allowed only when not purely numeric - HAPI's default,
		// stated explicitly because it is a deliberate choice (numeric ids collide with server ids).
		s.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ALPHANUMERIC);

		// Finite upper bound on how many results a search may load; paging sizes are on the
		// paging provider (see RestServerConfig).
		s.setFetchSizeDefaultMaximum(10_000);

		// Subscriptions, stale-search cleanup, batch2 maintenance all run on HAPI's scheduler.
		s.setSchedulingDisabled(false);

		s.setDeleteEnabled(true);
		s.setAllowMultipleDelete(false);
		s.setExpungeEnabled(true); // handy for test clean-up

		// Must stay true (HAPI's default). Despite its name, false makes the registry ignore EVERY
		// SearchParameter stored on the server, not just ones that redefine a built-in parameter
		// (SearchParamRegistryImpl skips all DB SearchParameters), so custom ones answer HAPI-0524.
		s.setDefaultSearchParamsCanBeOverridden(true);
		// Creating/changing a SearchParameter starts a batch2 reindex job over its base types
		// (HAPI's default), so resources stored BEFORE the SearchParameter become searchable too.
		// Resources written after it are indexed at write time and need no reindex. Fast tracking
		// lets a small gated job (like reindex) run its next step as soon as the previous one ends
		// instead of one step per maintenance pass; with batch2MaintenanceInterval below, a reindex
		// of a test-sized database finishes about 2 s after the SearchParameter is created. With
		// HAPI's defaults it took minutes (one step per 60 s pass, and reindex has four steps).
		s.setMarkResourcesForReindexingUponSearchParameterChange(true);
		s.setJobFastTrackingEnabled(true);
		return s;
	}

	/** REST-hook is the only channel Careway uses; without a supported type the subscription module stays idle. */
	@Bean
	public SubscriptionSettings subscriptionSettings() {
		SubscriptionSettings s = new SubscriptionSettings();
		// (HAPI's settings API uses the dstu2-model enum for every FHIR version.)
		s.addSupportedSubscriptionType(Subscription.SubscriptionChannelType.RESTHOOK);
		// Hand changes to the matcher right after commit instead of waiting for the next poll
		// (default 5 s): tests wait for notifications, so latency matters.
		s.setSubscriptionChangeQueuedImmediately(true);
		// Fallback poll for anything that could not be queued immediately.
		s.setSubscriptionIntervalInMs(1000);
		return s;
	}

	/** Explicitly no narratives: generated XHTML costs time and makes responses noisy in tests. */
	@Bean
	public INarrativeGenerator narrativeGenerator() {
		return new NullNarrativeGenerator();
	}

	@Bean
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory theBeanFactory,
			DataSource theDataSource,
			FhirContext theFhirContext,
			JpaStorageSettings theStorageSettings) {
		LocalContainerEntityManagerFactoryBean emf =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(theBeanFactory, theFhirContext, theStorageSettings);
		emf.setPersistenceUnitName("HAPI_PU");
		emf.setDataSource(theDataSource);

		Properties p = new Properties();
		p.put(
				"hibernate.dialect",
				onPostgres() ? HapiFhirPostgresDialect.class.getName() : HapiFhirH2Dialect.class.getName());
		// Empty in-memory DB at every start (or an empty PostgreSQL database): let Hibernate create the schema.
		p.put("hibernate.hbm2ddl.auto", "update");
		// Hibernate Search is on the classpath (via jpaserver-base) but we have no Lucene/Elastic
		// backend; left enabled it fails to start choosing one.
		p.put("hibernate.search.enabled", "false");
		// No second-level/query cache: a single process, and stale entities would defeat the
		// read-after-write guarantees we need.
		p.put("hibernate.cache.use_second_level_cache", "false");
		p.put("hibernate.cache.use_query_cache", "false");
		p.put("hibernate.cache.use_structured_entries", "false");
		p.put("hibernate.format_sql", "false");
		p.put("hibernate.show_sql", "false");
		p.put("hibernate.jdbc.batch_size", "20");
		emf.setJpaProperties(p);
		return emf;
	}

	@Bean
	public JpaTransactionManager transactionManager(EntityManagerFactory theEntityManagerFactory) {
		return new JpaTransactionManager(theEntityManagerFactory);
	}

	/**
	 * Runs the batch2 maintenance pass every 2 s instead of every 60 s. The pass is what picks up a
	 * newly queued job (e.g. the reindex started by a SearchParameter create) and moves it between
	 * steps. It is a couple of small queries when no job is running. Must be set before the
	 * context refresh, when HAPI schedules the job; a bean method runs early enough.
	 */
	@Bean
	public Object batch2MaintenanceInterval(IJobMaintenanceService theJobMaintenanceService) {
		if (theJobMaintenanceService instanceof JobMaintenanceServiceImpl impl) {
			impl.setScheduledJobFrequencyMillis(BATCH2_MAINTENANCE_INTERVAL_MS);
		} else {
			ourLog.warn("Unexpected batch2 maintenance service {}; keeping its default interval",
					theJobMaintenanceService.getClass().getName());
		}
		return BATCH2_MAINTENANCE_INTERVAL_MS;
	}

	/** Required by the subscription processor's email channel, which we never use. */
	@Bean
	public IEmailSender emailSender() {
		return theDetails -> ourLog.warn("Email subscriptions are not supported; dropping {}", theDetails);
	}

	/** Binary/attachment externalisation needs a store; memory is fine for a throw-away server. */
	@Bean
	public IBinaryStorageSvc binaryStorageSvc() {
		return new MemoryBinaryStorageSvcImpl();
	}
}
